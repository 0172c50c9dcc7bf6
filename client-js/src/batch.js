// Beacon packing: the queued events go out in bodies of at most 60 KB (the
// keepalive/sendBeacon quota is 64 KB) and a bounded number of events. A body
// is never cut: events are split across beacons, each a complete JSON document.

export var MAX_BEACON_BYTES = 61440;
export var MAX_BEACON_EVENTS = 100;

// A surrogate pair, or a lone surrogate (a string cut inside an emoji, by us
// or by the page): JSON.stringify writes a lone one as a \udXXX escape, which
// the server's JSON parser refuses, and the whole beacon with it.
var SURROGATES = /[\ud800-\udbff][\udc00-\udfff]|[\ud800-\udfff]/g;

/**
 * Longest string sent, in UTF-16 units: at most 3 UTF-8 bytes each, so under
 * the server's max_string_bytes (16 KiB by default), which refuses a whole
 * beacon for one longer string. The collectors cut theirs shorter; this cuts
 * what they do not (`RUM.track` data, `beforeSend` edits).
 */
export var MAX_STRING = 5000;

/** The JSON.stringify replacer of beacons: long strings cut, lone surrogates become U+FFFD. */
function sendable(key, value) {
  return typeof value == 'string' ? value.slice(0, MAX_STRING).replace(SURROGATES, (s) => (s.length > 1 ? s : '\ufffd')) : value;
}

/** Bytes of `text` once UTF-8 encoded, without allocating. */
export function utf8Length(text) {
  for (var n = 0, i = 0, c; i < text.length; i++) {
    c = text.charCodeAt(i);
    // A surrogate pair (4 bytes) is two UTF-16 units of 2 each.
    n += c < 0x80 ? 1 : c < 0x800 || (c >= 0xd800 && c < 0xe000) ? 2 : 3;
  }
  return n;
}

/**
 * Serializes `events` into beacon bodies sharing `head` (the beacon without
 * `events`). Returns the bodies; an event too big for any beacon on its own is
 * left out (the collectors cap their strings so this does not happen), and so
 * is one JSON cannot write (a cycle or a BigInt in `RUM.track` data): it must
 * not take the events flushed with it down.
 */
export function packBeacons(head, events, maxBytes, maxEvents) {
  maxBytes = maxBytes || MAX_BEACON_BYTES;
  maxEvents = maxEvents || MAX_BEACON_EVENTS;
  var prefix = JSON.stringify(head, sendable).slice(0, -1) + ',"events":[',
    base = utf8Length(prefix) + 2,
    bodies = [],
    part = [],
    size = base;
  function close() {
    if (part.length) bodies.push(prefix + part.join(',') + ']}');
    part = [];
    size = base;
  }
  events.forEach(function (event) {
    var json, bytes;
    try {
      json = JSON.stringify(event, sendable);
    } catch (e) {
      return;
    }
    bytes = utf8Length(json);
    if (base + bytes > maxBytes) return;
    if (part.length && (size + 1 + bytes > maxBytes || part.length >= maxEvents)) close();
    size += bytes + (part.length ? 1 : 0);
    part.push(json);
  });
  close();
  return bodies;
}
