-- Carrier callbacks: one delivery report per POST /carrier/default/reports, each with its own
-- carrier id (reports for unknown messages: stored, then kept as early reports by a dlr pool).
-- done() prints one JSON line (latencies in microseconds) after wrk's own report.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_CALLBACK_TOKEN")
counter = 0

request = function()
  counter = counter + 1
  return wrk.format(nil, "/carrier/default/reports", nil,
    '{"id":"c-' .. counter .. '","stat":"DELIVRD","err":"000"}')
end

done = function(summary, latency, requests)
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"status_errors":%d,"p50_us":%d,"p99_us":%d}\n',
    summary.requests, summary.duration, summary.errors.status,
    latency:percentile(50), latency:percentile(99)))
end
