-- wrk script: POST a CSP / Reporting API fixture over and over.
-- Env: CSP_BODY (file), CSP_TYPE (Content-Type).
local body, ctype
init = function(args)
  local f = assert(io.open(os.getenv("CSP_BODY"), "rb"))
  body = f:read("*a")
  f:close()
  ctype = os.getenv("CSP_TYPE")
end

request = function()
  return wrk.format("POST", nil, {
    ["Content-Type"] = ctype,
    ["User-Agent"] = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36",
  }, body)
end

-- As bench/beacon.lua: non2xx counts answers over 399, socket_errors the rest.
done = function(summary, latency, requests)
  local socket_errors = summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout
  io.write(string.format("RESULT requests=%d seconds=%.3f non2xx=%d socket_errors=%d p50_ms=%.3f p99_ms=%.3f\n",
    summary.requests, summary.duration / 1e6, summary.errors.status, socket_errors, latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
