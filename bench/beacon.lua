-- wrk script: POST /rum with realistic beacons (10 events, ~1.5 KB), cycling
-- through user agents and client IPs (X-Forwarded-For; the pipeline trusts
-- 127.0.0.1 as a proxy in the bench pipelines).
local uas = {
  "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
  "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
  "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
  "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
  "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/26.0 Chrome/122.0.0.0 Mobile Safari/537.36",
  "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
}
local requests = {}
local counter = 0

-- BEACON_REPEAT=N sends each beacon's ten events N times (N=30: ~45 KB
-- beacons, for bench/overload_memory.sh); unset, the realistic 1.5 KB beacon.
local repeat_events = tonumber(os.getenv("BEACON_REPEAT") or "1") or 1
local function repeated(events)
  if repeat_events <= 1 then return events end
  local out = {}
  for _ = 1, repeat_events do
    for _, e in ipairs(events) do table.insert(out, e) end
  end
  return out
end

local function beacon(i)
  local now = 1763700000000 + i
  local sid = string.format("sess-%08x", i * 2654435761 % 4294967296)
  local events = {
    string.format('{"type":"page_view","ts":%d,"navigation_type":"navigate","dns":12.5,"tcp":20.1,"tls":18.2,"ttfb":120.4,"response":30.2,"dom_interactive":480.5,"dom_content_loaded":520.1,"load":910.7,"transfer_size":23450,"protocol":"h2"}', now - 900),
    string.format('{"type":"web_vital","ts":%d,"name":"LCP","value":1234.5,"rating":"good","delta":1234.5,"id":"v4-%d-1"}', now - 800, i),
    string.format('{"type":"web_vital","ts":%d,"name":"CLS","value":0.042,"rating":"good","delta":0.01,"id":"v4-%d-2"}', now - 700, i),
    string.format('{"type":"web_vital","ts":%d,"name":"FCP","value":812.3,"rating":"good","delta":812.3,"id":"v4-%d-3"}', now - 690, i),
    string.format('{"type":"resource","ts":%d,"name":"https://cdn.example.com/static/app.%d.js","initiator_type":"script","duration":81.2,"transfer_size":48210,"render_blocking":"blocking"}', now - 600, i % 50),
    string.format('{"type":"resource","ts":%d,"name":"https://cdn.example.com/img/hero.webp","initiator_type":"img","duration":140.9,"transfer_size":98120}', now - 500),
    string.format('{"type":"http","ts":%d,"kind":"fetch","method":"GET","url":"https://api.example.com/cart?id=%d","status":200,"duration":45.3,"size":812}', now - 400, i),
    string.format('{"type":"action","ts":%d,"kind":"click","target":"button#add-to-cart.btn.primary"}', now - 300),
    string.format('{"type":"web_vital","ts":%d,"name":"INP","value":96,"rating":"good","delta":96,"id":"v4-%d-4"}', now - 200, i),
    string.format('{"type":"error","ts":%d,"message":"Cannot read properties of undefined (reading \'price\')","name":"TypeError","stack":"TypeError: Cannot read properties of undefined\\n    at render (https://cdn.example.com/static/app.js:1:2345)","count":1}', now - 100),
  }
  return string.format('{"v":1,"app":{"name":"shop","version":"1.4.2","env":"production"},"session":{"id":"%s"},"view":{"id":"%s-v1","url":"https://shop.example.com/product/%d?ref=home","referrer":"https://www.google.com/","title":"Product %d"},"sent_at":%d,"events":[%s]}',
    sid, sid, i, i, now, table.concat(repeated(events), ","))
end

init = function(args)
  for i = 1, 64 do
    local headers = {
      ["Content-Type"] = "text/plain;charset=UTF-8",
      ["User-Agent"] = uas[(i % #uas) + 1],
      ["X-Forwarded-For"] = string.format("%d.%d.%d.%d", 20 + i, (i * 7) % 250, (i * 13) % 250, (i * 31) % 250 + 1),
    }
    requests[i] = wrk.format("POST", "/rum", headers, beacon(i))
  end
end

request = function()
  counter = counter + 1
  return requests[(counter % #requests) + 1]
end

-- With BEACON_COUNT_STATUS set (bench/run.sh's overload mode), count the
-- answers by status (a response callback slows wrk, so only then).
local threads = {}
setup = function(thread) table.insert(threads, thread) end
if os.getenv("BEACON_COUNT_STATUS") then
  status_2xx, status_503, status_other = 0, 0, 0
  response = function(status, headers, body)
    if status < 300 then status_2xx = status_2xx + 1
    elseif status == 503 then status_503 = status_503 + 1
    else status_other = status_other + 1 end
  end
end

-- non2xx: answers wrk counts as errors (its "Non-2xx or 3xx responses",
-- status > 399: a beacon refused, shed or rate-limited); socket_errors:
-- connect, read, write and timeout errors. Neither is a beacon taken in.
done = function(summary, latency, requests)
  local socket_errors = summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout
  local statuses = ""
  if os.getenv("BEACON_COUNT_STATUS") then
    local ok, s503, other = 0, 0, 0
    for _, t in ipairs(threads) do
      ok = ok + (t:get("status_2xx") or 0)
      s503 = s503 + (t:get("status_503") or 0)
      other = other + (t:get("status_other") or 0)
    end
    statuses = string.format(" status_2xx=%d status_503=%d status_other=%d", ok, s503, other)
  end
  io.write(string.format("RESULT requests=%d seconds=%.3f non2xx=%d socket_errors=%d p50_ms=%.3f p99_ms=%.3f%s\n",
    summary.requests, summary.duration / 1e6, summary.errors.status, socket_errors, latency:percentile(50) / 1000, latency:percentile(99) / 1000, statuses))
end
