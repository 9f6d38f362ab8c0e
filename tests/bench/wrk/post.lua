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
-- Optional pacing (the soak's "70% of the maximum"): each connection waits this many
-- milliseconds before each request.
local delay_ms = tonumber(os.getenv("BENCH_DELAY_MS") or "0")
answered = 0
statuses = {}
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

if delay_ms > 0 then
  function delay()
    return delay_ms
  end
end

function response(status, headers, body)
  answered = answered + 1
  statuses[status] = (statuses[status] or 0) + 1
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
  local counts = {}
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("statuses") or {}) do
      counts[status] = (counts[status] or 0) + count
    end
  end
  local status_parts = {}
  for status, count in pairs(counts) do
    status_parts[#status_parts + 1] = string.format('"%d": %d', status, count)
  end
  io.write(string.format(
    'BENCH_RESULT {"duration_us": %d, "requests": %d, "bytes": %d, '
      .. '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, '
      .. '"latency_us": {"min": %d, "max": %d, "mean": %.1f, "stdev": %.1f, "percentiles": {%s}}, '
      .. '"statuses": {%s}}\n',
    summary.duration, summary.requests, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.max, latency.mean, latency.stdev, table.concat(points, ", "),
    table.concat(status_parts, ", ")))
end
