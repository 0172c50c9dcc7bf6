import { test } from 'node:test';
import assert from 'node:assert/strict';
import { packBeacons, utf8Length, MAX_BEACON_BYTES, MAX_BEACON_EVENTS, MAX_STRING } from '../../src/batch.js';

const head = { v: 1, app: { name: 'shop' }, session: { id: 's1' }, view: { id: 'v1', url: 'https://shop.example/' }, sent_at: 1 };

function unpack(bodies) {
  return bodies.map((b) => JSON.parse(b));
}

/** Strings, none longer than MAX_STRING, whose JSON array is `extra` bytes longer than `[]`. */
function filler(extra) {
  const count = Math.ceil((extra + 1) / (MAX_STRING + 3));
  let left = extra - 2 * count - (count - 1);
  return Array.from({ length: count }, () => {
    const n = Math.min(MAX_STRING, left);
    left -= n;
    return 'x'.repeat(n);
  });
}

test('utf8Length counts bytes as TextEncoder does', () => {
  for (const s of ['', 'abc', 'ÄÖÜ', '€uro', '😀 emoji', 'mixed ✓ 日本 😀😀 z', '\u0000\u007f\u0080\u07ff\u0800\uffff']) {
    assert.equal(utf8Length(s), new TextEncoder().encode(s).length, s);
  }
});

test('a few events go out in one beacon, in order, with the shared head', () => {
  const events = [1, 2, 3].map((seq) => ({ type: 'action', seq }));
  const beacons = unpack(packBeacons(head, events));
  assert.equal(beacons.length, 1);
  assert.deepEqual(beacons[0], { ...head, events });
});

test('no events, no beacon', () => {
  assert.deepEqual(packBeacons(head, []), []);
});

test('big batches are split under 60 KB, never truncated, nothing lost', () => {
  // ~1.3 KB per event, multi-byte characters included: bytes, not characters, count.
  const events = Array.from({ length: 120 }, (_, seq) => ({ type: 'error', seq, stack: `é😀${seq}`.repeat(200) }));
  const bodies = packBeacons(head, events);
  assert.ok(bodies.length >= 3, `${bodies.length} beacons`);
  for (const body of bodies) assert.ok(Buffer.byteLength(body) <= MAX_BEACON_BYTES, `${Buffer.byteLength(body)} bytes`);
  for (const body of bodies.slice(0, -1)) {
    assert.ok(Buffer.byteLength(body) > MAX_BEACON_BYTES - 3000, 'a beacon is filled before the next one starts');
  }
  const beacons = unpack(bodies);
  assert.deepEqual(beacons.flatMap((b) => b.events), events);
  for (const b of beacons) assert.deepEqual({ ...b, events: undefined }, { ...head, events: undefined });
});

test('a beacon that lands exactly on the limit is kept whole', () => {
  const one = packBeacons(head, [{ type: 'custom', data: [] }])[0];
  const room = MAX_BEACON_BYTES - Buffer.byteLength(one);
  const exact = { type: 'custom', data: filler(room) };
  const bodies = packBeacons(head, [exact]);
  assert.equal(bodies.length, 1);
  assert.equal(Buffer.byteLength(bodies[0]), MAX_BEACON_BYTES);
  assert.deepEqual(unpack(bodies)[0].events, [exact]);
  const over = { type: 'custom', data: filler(room + 1) };
  assert.deepEqual(packBeacons(head, [over]), [], 'an event no beacon can hold is left out, not cut');
});

test('an oversized event does not take its neighbours down', () => {
  const events = [{ type: 'action', seq: 0 }, { type: 'custom', seq: 1, data: filler(70000) }, { type: 'action', seq: 2 }];
  const beacons = unpack(packBeacons(head, events));
  assert.deepEqual(beacons.flatMap((b) => b.events).map((e) => e.seq), [0, 2]);
});

test('at most MAX_BEACON_EVENTS events per beacon', () => {
  const events = Array.from({ length: MAX_BEACON_EVENTS * 2 + 1 }, (_, seq) => ({ type: 'action', seq }));
  const beacons = unpack(packBeacons(head, events));
  assert.deepEqual(beacons.map((b) => b.events.length), [MAX_BEACON_EVENTS, MAX_BEACON_EVENTS, 1]);
  assert.deepEqual(beacons.flatMap((b) => b.events), events);
});

test('strings that need JSON escaping are measured after escaping', () => {
  const events = Array.from({ length: 40 }, (_, seq) => ({ type: 'error', seq, message: '"\\\n\u0001'.repeat(500) }));
  const bodies = packBeacons(head, events);
  assert.ok(bodies.length > 1);
  for (const body of bodies) assert.ok(Buffer.byteLength(body) <= MAX_BEACON_BYTES);
  assert.deepEqual(unpack(bodies).flatMap((b) => b.events), events);
});

test('an event JSON cannot write (a cycle, a BigInt in RUM.track data) is left out alone', () => {
  // JSON.stringify throws for these; the flush had already taken the queue,
  // so one such event lost every event queued with it.
  const cyclic = { type: 'custom', seq: 1, data: {} };
  cyclic.data.self = cyclic.data;
  const events = [{ type: 'action', seq: 0 }, cyclic, { type: 'custom', seq: 2, data: { n: 10n } }, { type: 'action', seq: 3 }];
  const beacons = unpack(packBeacons(head, events));
  assert.deepEqual(beacons.flatMap((b) => b.events).map((e) => e.seq), [0, 3]);
});

test('a lone surrogate (a string cut inside an emoji) is sent as U+FFFD, pairs as they are', () => {
  // JSON.stringify writes a lone surrogate as a \udXXX escape, which the
  // server's JSON parser refuses, and the whole beacon with it (400
  // invalid_json: "unexpected end of hex escape").
  const cut = '😀😀'.slice(0, 3);
  const events = [{ type: 'error', seq: 0, message: `${cut} ok 😀`, stack: '\udc00 low first' }, { type: 'action', seq: 1 }];
  const bodies = packBeacons({ ...head, view: { ...head.view, title: `title ${cut}` } }, events);
  for (const body of bodies) assert.doesNotMatch(body, /\\ud[89a-f]/i, 'no surrogate escapes');
  const [beacon] = unpack(bodies);
  assert.equal(beacon.view.title, 'title 😀\ufffd');
  assert.equal(beacon.events[0].message, '😀\ufffd ok 😀');
  assert.equal(beacon.events[0].stack, '\ufffd low first');
  assert.equal(beacon.events.length, 2);
});

test('no string in a beacon is longer than the server takes (max_string_bytes, 16 KiB by default)', () => {
  // The server refuses a whole beacon for one longer string (400
  // string_too_long); RUM.track data and beforeSend edits are not cut by the
  // collectors.
  const strings = (value) => (typeof value == 'string' ? [value] : value && typeof value == 'object' ? Object.values(value).flatMap(strings) : []);
  const events = [
    { type: 'custom', seq: 0, data: { blob: 'x'.repeat(20000), nested: ['日'.repeat(6000)] } },
    { type: 'error', seq: 1, message: 'é'.repeat(9000) },
    { type: 'action', seq: 2 },
  ];
  const beacons = unpack(packBeacons(head, events));
  assert.deepEqual(beacons.flatMap((b) => b.events).map((e) => e.seq), [0, 1, 2]);
  for (const s of beacons.flatMap(strings)) assert.ok(Buffer.byteLength(s) <= 16384, `${Buffer.byteLength(s)} bytes`);
  assert.ok(beacons[0].events[0].data.blob.startsWith('xxx'), 'cut, not dropped');
});
