-- Scenario E: single-recipient POST /v2.1/sms; keys from the environment.
-- done() prints one JSON line (latencies in microseconds) after wrk's own report.
-- With BENCH_CEILING=1 (E's ceiling): GET, no body, no keys; the URL names /healthz.
if os.getenv("BENCH_CEILING") ~= "1" then
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Application-Key"] = os.getenv("BENCH_APP_KEY")
  wrk.headers["Authorization"] = os.getenv("BENCH_AUTH")
  wrk.body = '{"sender":"BENCH","message":"Your code is 123456","phoneNumbers":["+48500100200"]}'
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
