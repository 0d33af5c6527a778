-- Scenario L: GET {base}/{code} on random codes of BENCH_CODES (one code per line), as a
-- phone's browser. done() prints one JSON line (latencies in microseconds). BENCH_DELAY_MS set:
-- each connection waits that long before its next request (the paced run at a target rate).
local codes = {}
for line in io.lines(os.getenv("BENCH_CODES")) do codes[#codes + 1] = line end
wrk.headers["User-Agent"] = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 " ..
  "(KHTML, like Gecko) Chrome/126.0 Mobile Safari/537.36"

local pause = tonumber(os.getenv("BENCH_DELAY_MS") or "")
if pause then
  delay = function() return pause end
end

request = function()
  return wrk.format("GET", "/" .. codes[math.random(#codes)])
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"connect_errors":%d,"read_errors":%d,' ..
    '"write_errors":%d,"status_errors":%d,"timeouts":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    latency.mean))
end
