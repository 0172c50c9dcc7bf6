// The rum-pipeline browser client. Loaded as
//   <script src="https://rum.example.com/rum" data-app="shop" async></script>
// it posts beacons (format v1, see src/sources/beacon_decoder.rs) back to the
// URL it came from; or call RUM.init({...}). Everything runs guarded: the
// client never throws into the page, and its heavier work (navigation timing,
// high-entropy hints) waits until the page has loaded and is idle.

import { onCLS, onFCP, onINP, onLCP, onTTFB } from 'web-vitals/attribution';
import { keepSession } from './sampling.js';
import { packBeacons } from './batch.js';
import { describeClick } from './selector.js';
import { isIgnored, stripUrl } from './ignore.js';

var w = window,
  d = document,
  nav = navigator,
  perf = performance,
  storage,
  SESSION_KEY = '_rum_session',
  IDLE_MS = 18e5,
  MAX_BATCH = 50,
  FLUSH_MS = 1e4,
  // Per view: errors (distinct), long tasks.
  MAX_OTHER = 50,
  script = d.currentScript,
  // Taken before the HTTP collector wraps fetch: our own sends stay unobserved.
  fetchOriginal = w.fetch,
  config,
  session,
  // The current view. `vitalsView` is the one web-vitals measures (the hard
  // navigation, or the last bfcache restore): its late CLS/INP belong to it.
  view,
  vitalsView,
  queue = [],
  seq = 0,
  timer,
  flushSoon,
  uaHints,
  pageViewSent,
  // INP as web-vitals last measured it, held until the page is hidden, and
  // the last INP sent (its delta is counted from that one).
  inp,
  inpSent,
  // start() has run: session known, sampling decided, observers registered.
  started,
  // Per view: resources, long tasks and distinct errors sent, and the errors by key.
  resources,
  longTasks,
  errorCount,
  errors;

const guard = (fn) =>
  function () {
    try {
      return fn.apply(this, arguments);
    } catch (e) {}
  };
const uid = () => (crypto.randomUUID ? crypto.randomUUID() : Date.now().toString(36) + Math.random().toString(36).slice(2));
const epoch = (t) => Math.round(perf.timeOrigin + t);
const ms = (t) => (t >= 0 ? Math.round(t * 10) / 10 : undefined);
// A milestone still at 0 has not happened yet: leave it out.
const reached = (t) => (t > 0 ? ms(t) : undefined);
const cut = (text, max) => (text == null ? undefined : String(text).slice(0, max));
// Cut, not refused: the server refuses a whole beacon for one over-long string.
const here = () => cut(location.href, 4000);
const on = (target, type, fn, capture) => target.addEventListener(type, guard(fn), { capture: capture, passive: true });
const observe = (type, fn) =>
  guard(() => new PerformanceObserver(guard((list) => list.getEntries().forEach(fn))).observe({ type, buffered: true }))();
const saveSession = guard(() => storage.setItem(SESSION_KEY, JSON.stringify(session)));

function newView(type) {
  var previous = view;
  view = { id: uid(), url: here(), referrer: previous ? previous.url : cut(d.referrer, 4000), title: cut(d.title, 500) };
  resources = longTasks = errorCount = 0;
  errors = {};
  if (previous) add({ type: 'page_view', soft: type != 'back_forward_cache', navigation_type: type });
  return view;
}

/** Queues one event for the current view (or `forView`). */
function add(event, forView) {
  if (!config) return;
  var now = Date.now();
  if (session) {
    if (now - session.t > IDLE_MS) {
      // Idle for 30 min: what follows is a new session, sampled anew.
      flush();
      session = { id: uid() };
      saveSession();
      if (!keepSession(session.id, config.sampleRate)) return (config = 0);
    }
    session.t = now;
  }
  event.ts = event.ts || now;
  event.seq = seq++;
  event._view = forView || view;
  queue.push(event);
  if (queue.length >= MAX_BATCH) flush();
  else if (d.visibilityState == 'hidden') {
    // The page may be gone before a timer fires: send at the end of this task.
    flushSoon = flushSoon || Promise.resolve().then(guard(flush));
  } else timer = timer || setTimeout(guard(flush), FLUSH_MS);
}

function flush() {
  clearTimeout(timer);
  timer = flushSoon = 0;
  if (queue.length) start();
  if (!config || !queue.length) return;
  var events = [],
    c = nav.connection,
    beforeSend = config.beforeSend;
  view.title = cut(d.title, 500);
  queue.splice(0).forEach((event) => {
    var kept = event;
    if (event._view != view) event.view = event._view;
    delete event._view;
    // beforeSend returns the event to send; anything falsy, or a throw, drops
    // it (a failing scrubber must not let the unscrubbed event through).
    if (beforeSend) kept = guard(beforeSend)(event);
    if (kept) events.push(kept);
  });
  saveSession();
  packBeacons(
    {
      v: 1,
      app: { name: config.app, version: config.version, env: config.env },
      session: { id: session.id },
      view,
      sent_at: Date.now(),
      ua_hints: uaHints,
      device: {
        memory: nav.deviceMemory,
        cores: nav.hardwareConcurrency,
        connection: c && { effective_type: c.effectiveType, rtt: c.rtt, downlink: c.downlink, save_data: c.saveData },
      },
    },
    events
  ).forEach((body) => {
    var post = (keepalive) => fetchOriginal(config.url, { method: 'POST', body, keepalive, credentials: 'omit' });
    // sendBeacon and keepalive fetches share a 64 KB in-flight quota: past it,
    // a plain fetch still goes while the page lives.
    guard(() => nav.sendBeacon(config.url, body))() || guard(() => post(true).catch(() => post(false)).catch(() => {}))();
  });
}

function pageView() {
  if (pageViewSent) return;
  pageViewSent = 1;
  var n = perf.getEntriesByType('navigation')[0] || {},
    timing = (n.serverTiming || []).slice(0, 20).map((s) => ({ name: cut(s.name, 100), duration: s.duration, description: cut(s.description, 200) }));
  add(
    {
          type: 'page_view',
          soft: false,
          ts: epoch(0),
          navigation_type: n.type,
          redirect: ms(n.redirectEnd - n.redirectStart),
          dns: ms(n.domainLookupEnd - n.domainLookupStart),
          tcp: ms(n.connectEnd - n.connectStart),
          tls: n.secureConnectionStart > 0 ? ms(n.connectEnd - n.secureConnectionStart) : 0,
          ttfb: reached(n.responseStart),
          response: n.responseEnd > 0 ? ms(n.responseEnd - n.responseStart) : undefined,
          dom_interactive: reached(n.domInteractive),
          dom_content_loaded: reached(n.domContentLoadedEventEnd),
          dom_complete: reached(n.domComplete),
          load: reached(n.loadEventEnd),
          transfer_size: n.transferSize,
          encoded_size: n.encodedBodySize,
          decoded_size: n.decodedBodySize,
          protocol: n.nextHopProtocol || undefined,
          server_timing: timing.length ? timing : undefined,
    },
    vitalsView
  );
}

function vital(metric) {
  var source = metric.attribution || {},
    attribution = {},
    key,
    value;
  // The scalar attribution (targets, URLs, sub-parts); entries stay home.
  for (key in source) {
    value = source[key];
    if (/number|boolean/.test(typeof value)) attribution[key] = value;
    else if (typeof value == 'string') attribution[key] = cut(value, 500);
  }
  add(
    {
      type: 'web_vital',
      name: metric.name,
      value: metric.value,
      rating: metric.rating,
      delta: metric.delta,
      id: metric.id,
      navigation_type: metric.navigationType,
      attribution,
    },
    vitalsView
  );
}

/**
 * INP is asked for on every change, held, and sent by us when the page is
 * hidden. web-vitals measures interactions in idle callbacks, and when the
 * page is left before they have run (a busy or slow page) its own hidden-time
 * report comes first and sees no interaction; the values learnt a moment
 * later, one per pending callback, would never be reported. Those callbacks
 * are window capture listeners of the same visibilitychange as our document
 * listener, so they have all run when hidden() sends the last value. A value
 * learnt later while hidden goes out on a timer.
 */
function onInp(metric) {
  inp = metric;
  if (d.visibilityState == 'hidden') setTimeout(guard(sendInp));
}

function sendInp() {
  if (!inp) return;
  var same = inpSent && inpSent.id == inp.id;
  if (!same || inp.value != inpSent.value) vital({ ...inp, delta: inp.value - (same ? inpSent.value : 0) });
  inpSent = { id: inp.id, value: inp.value };
  inp = 0;
}

function resource(r) {
  var transfer = r.transferSize;
  // Our own script is a resource like any other; our beacons are not.
  if (resources >= config.maxResources || (r.initiatorType != 'script' && isIgnored(r.name, config.url, config.ignoreUrls))) return;
  resources++;
  add({
    type: 'resource',
    ts: epoch(r.startTime),
    name: cut(r.name, 1000),
    initiator_type: r.initiatorType,
    start: ms(r.startTime),
    duration: ms(r.duration),
    transfer_size: transfer,
    encoded_size: r.encodedBodySize,
    decoded_size: r.decodedBodySize,
    render_blocking: r.renderBlockingStatus,
    // A guess: nothing transferred but a body means the HTTP cache answered;
    // fewer bytes than the body means a 304 revalidation.
    cache:
      r.deliveryType == 'cache' || (transfer === 0 && r.decodedBodySize > 0)
        ? 'hit'
        : transfer > 0
          ? transfer < r.encodedBodySize
            ? 'revalidated'
            : 'miss'
          : undefined,
    protocol: r.nextHopProtocol || undefined,
    status: r.responseStatus || undefined,
  });
}

function longTask(t) {
  if (longTasks++ < MAX_OTHER)
    add({
      type: 'long_task',
      kind: t.entryType,
      ts: epoch(t.startTime),
      start: ms(t.startTime),
      duration: ms(t.duration),
      blocking_duration: ms(t.blockingDuration),
      scripts:
        t.scripts &&
        t.scripts.slice(0, 3).map((s) => ({
          invoker: cut(s.invoker, 200),
          invoker_type: s.invokerType,
          source_url: cut(s.sourceURL, 500),
          function: cut(s.sourceFunctionName, 100),
          duration: ms(s.duration),
        })),
    });
}

/** One event per distinct error and view; a repeat raises the count while it is queued. */
function error(kind, e, message, source, line, column) {
  message = cut(message || e?.message || e, 1000);
  var key = [kind, message, source, line, column].join('|'),
    event = errors[key];
  if (event && queue.indexOf(event) >= 0) event.count++;
  else if (errorCount++ < MAX_OTHER)
    add(
      (errors[key] = {
        type: 'error',
        kind,
        message,
        name: cut(e?.name, 100),
        stack: cut(e?.stack, 4000),
        source: cut(source, 1000) || undefined,
        line: line || undefined,
        column: column || undefined,
        count: 1,
      })
    );
}

function http(kind, method, url, start, status, length, startView) {
  // Relative to the base URL, as fetch and XHR resolve it (a <base> changes it).
  url = guard(() => new URL(url, d.baseURI).href)() || String(url);
  if (config && !isIgnored(url, config.url, config.ignoreUrls))
    add({
      type: 'http',
      ts: epoch(start),
      kind,
      method: String(method || 'GET').toUpperCase(),
      url: cut(url, 1000),
      status,
      duration: ms(perf.now() - start),
      size: length ? +length : undefined,
    }, startView);
}

// Wrapped, not replaced: the page gets the very promise / request it asked for.
function wrapHttp() {
  var xhr = XMLHttpRequest.prototype,
    open = xhr.open,
    send = xhr.send;
  if (fetchOriginal)
    w.fetch = function (input, init) {
      // A call belongs to the view it started in, even if it ends after a route change.
      var start = perf.now(),
        startView = view,
        promise = fetchOriginal.apply(this, arguments),
        // An opaque answer (no-cors, a manual redirect) went through but shows
        // no status (0 to the page): left out, as 0 means a network failure.
        done = guard((r) =>
          http('fetch', init?.method || input.method, input.url || input, start, r ? r.status || undefined : 0, r && r.headers.get('content-length'), startView)
        );
      promise.then(done, () => done());
      return promise;
    };
  // One call of an XHR object is [method, url, start, view] once sent. An
  // object is often used again (retries, polling), even from its own loadend
  // handler, which runs before our listener: a call that has ended (DONE) is
  // reported at the latest when the object is opened again, while its status
  // is still there; one that open() cuts short (no loadend) is not. One
  // listener per object, and a call is reported once.
  const report = (x) => {
    var call = x._rum;
    if (x.readyState == 4 && call[2] && !call[4]) {
      call[4] = 1;
      http('xhr', call[0], call[1], call[2], x.status, x.getResponseHeader('content-length'), call[3]);
    }
  };
  xhr.open = function (method, url) {
    var x = this;
    if (x._rum) guard(report)(x);
    else on(x, 'loadend', () => report(x));
    x._rum = [method, url];
    return open.apply(x, arguments);
  };
  xhr.send = function () {
    var call = this._rum;
    if (call && !call[2]) (call[2] = perf.now()), (call[3] = view);
    return send.apply(this, arguments);
  };
}

function route(type) {
  if (config && stripUrl(here()) != stripUrl(view.url)) newView(type);
}

function wrapHistory() {
  ['pushState', 'replaceState'].forEach((name) => {
    var original = history[name];
    history[name] = function () {
      var result = original.apply(this, arguments);
      guard(route)(name == 'pushState' ? 'push' : 'replace');
      return result;
    };
  });
  on(w, 'popstate', () => route('popstate'));
}

function hidden() {
  // First and guarded alone: web-vitals no longer reports INP by itself.
  guard(sendInp)();
  start();
  pageView();
  flush();
}

/**
 * What can wait until the page has loaded and is idle (or is being left):
 * the session (sessionStorage costs a round trip to the browser process) and
 * the sampling decision. Events queued before it are dropped with the queue
 * when the session is sampled out.
 */
function start() {
  if (started || !config) return;
  started = 1;
  var now = Date.now(),
    stored,
    uad = nav.userAgentData;
  guard(() => {
    storage = sessionStorage;
    stored = JSON.parse(storage.getItem(SESSION_KEY));
  })();
  session = stored && stored.id && now - stored.t <= IDLE_MS ? stored : { id: uid() };
  session.t = now;
  // Stored even when sampled out, so the decision holds for the whole session.
  saveSession();
  if (!keepSession(session.id, config.sampleRate)) {
    queue = [];
    return (config = 0);
  }
  if (uad) {
    uaHints = { brands: uad.brands, mobile: uad.mobile, platform: uad.platform };
    // Resolves with the low-entropy hints too, all under the beacon's names.
    uad.getHighEntropyValues(['platformVersion', 'model', 'fullVersionList']).then((h) => (uaHints = h), () => {});
  }
}

/**
 * web-vitals and the performance observers, from init on. They cannot wait
 * for start(): observers deliver (and web-vitals reports FCP, TTFB, and CLS
 * after FCP) in later tasks, which a page being left never runs, so a page
 * left before it was idle (a busy page, a user leaving a slow one) sent LCP
 * alone. Cheap: the entries come in callbacks once the browser has them.
 */
function measure() {
  [onLCP, onCLS, onFCP, onTTFB].forEach((report) => guard(report)(guard(vital)));
  guard(onINP)(guard(onInp), { reportAllChanges: true });
  observe('resource', resource);
  observe(PerformanceObserver.supportedEntryTypes.includes('long-animation-frame') ? 'long-animation-frame' : 'longtask', longTask);
}

/** Right away only what must not miss anything and costs little: listeners, wrappers, observers. */
function init(options) {
  if (config) return;
  options = options || {};
  config = {
    ...options,
    url: stripUrl(options.url || script?.src || ''),
    sampleRate: options.sampleRate ?? 1,
    maxResources: options.maxResources ?? 150,
  };
  if (!config.url) return (config = 0);
  vitalsView = newView();
  on(w, 'error', (e) => error('error', e.error, e.message, e.filename, e.lineno, e.colno));
  on(w, 'unhandledrejection', (e) => {
    var reason = e.reason,
      isError = reason instanceof Error;
    // Anything can be a reason: a value that is no Error is said as JSON
    // (not "[object Object]"), undefined as "undefined" and "" as '""' (not "false").
    error(
      'unhandledrejection',
      isError && reason,
      isError ? reason.message : reason && typeof reason == 'string' ? reason : guard(JSON.stringify)(reason) || String(reason)
    );
  });
  on(
    d,
    'click',
    (e) => {
      var action = e.target.nodeType == 1 && describeClick(e.target);
      if (action) add({ type: 'action', kind: 'click', target: action.target, name: action.name });
    },
    true
  );
  guard(wrapHttp)();
  guard(wrapHistory)();
  guard(measure)();
  // On document, so it runs after web-vitals' capturing window listener has reported.
  on(d, 'visibilitychange', () => d.visibilityState == 'hidden' && hidden());
  on(w, 'pagehide', hidden);
  on(w, 'pageshow', (e) => {
    if (e.persisted) vitalsView = newView('back_forward_cache');
  });
  // After the load event has finished (loadEventEnd set), when the page is idle.
  const later = () =>
    setTimeout(() =>
      (w.requestIdleCallback || setTimeout)(
        guard(() => {
          start();
          pageView();
        }),
        { timeout: 5e3 }
      )
    );
  d.readyState == 'complete' ? later() : on(w, 'load', later);
}

guard(() => {
  w.RUM = w.RUM || {
    init: guard(init),
    /** A custom event: RUM.track('checkout', 129.9, {step: 2}). */
    track: guard((name, value, data) => add({ type: 'custom', name: cut(name, 200), value, data })),
  };
  // data-app, data-version, data-env, data-sample-rate, data-url: the init options.
  if (script?.dataset.app) init({ ...script.dataset });
})();
