// Session sampling, shared with the server's `sample` transform: both sides
// must keep the same sessions, so the hash is defined once (see
// testdata/sampling/vectors.json) and checked against those vectors.

/** FNV-1a 32-bit over the UTF-8 bytes of `text`. */
export function fnv1a32(text) {
  var bytes = new TextEncoder().encode(text), hash = 0x811c9dc5, i = 0;
  for (; i < bytes.length; i++) hash = Math.imul(hash ^ bytes[i], 0x01000193);
  return hash >>> 0;
}

/** Whether a session is kept at `rate` (0..1): hash / 2^32 < rate. */
export function keepSession(sessionId, rate) {
  return fnv1a32(sessionId) / 4294967296 < rate;
}
