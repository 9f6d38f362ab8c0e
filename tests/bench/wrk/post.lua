-- POST the same body on every request and print one JSON line with wrk's own counts
-- and latency distribution (microseconds) for the harness to parse. The run is bounded
-- in time by wrk's -d and in count by BENCH_MAX_REQUESTS (per wrk thread).
local body_file = assert(os.getenv("BENCH_BODY_FILE"), "BENCH_BODY_FILE is not set")
local handle = assert(io.open(body_file, "rb"))
wrk.method = "POST"
wrk.body = handle:read("*a")
handle:close()
wrk.headers["Content-Type"] = os.getenv("BENCH_CONTENT_TYPE") or "application/json"

local max_requests = assert(tonumber(os.getenv("BENCH_MAX_REQUESTS")), "BENCH_MAX_REQUESTS is not set")
local answered = 0

function response(status, headers, body)
  answered = answered + 1
  if answered >= max_requests then
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local points = {}
  for _, p in ipairs({50, 75, 90, 95, 99, 99.9}) do
    points[#points + 1] = string.format('"%s": %d', tostring(p), latency:percentile(p))
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"duration_us": %d, "requests": %d, "bytes": %d, '
      .. '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, '
      .. '"latency_us": {"min": %d, "max": %d, "mean": %.1f, "stdev": %.1f, "percentiles": {%s}}}\n',
    summary.duration, summary.requests, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.max, latency.mean, latency.stdev, table.concat(points, ", ")))
end
