// Which URLs the resource and HTTP collectors leave out: the client's own
// beacons, and whatever `ignoreUrls` names (substrings, RegExps or predicates).

/** `url` without query or fragment. */
export function stripUrl(url) {
  return String(url).split(/[?#]/)[0];
}

export function isIgnored(url, beaconUrl, patterns) {
  if (stripUrl(url) == beaconUrl) return true;
  return (patterns || []).some(function (p) {
    return typeof p == 'string' ? url.indexOf(p) >= 0 : typeof p == 'function' ? p(url) : p && p.test ? ((p.lastIndex = 0), p.test(url)) : false;
  });
}
