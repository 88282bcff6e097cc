-- GET /protected with a fresh remember-me cookie and no session on every request: each
-- pre-issued token (one a line in the file given after `--`) is used exactly once. A second
-- use would be a replay (theft detection), so running out is reported, not wrapped around.
-- Usage: wrk -t1 ... -s remember.lua http://127.0.0.1:PORT/protected -- TOKENS_FILE
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  tokens = {}
  for line in io.lines(args[1]) do
    tokens[#tokens + 1] = line
  end
  used = 0
  exhausted = 0
  host = wrk.headers["Host"]
end

function request()
  if used >= #tokens then
    exhausted = exhausted + 1
    -- No cookie at all: answered 401 (counted as an error), never a replay.
    return wrk.format("GET", "/protected", {
      ["Host"] = host,
      ["Accept"] = "application/json",
      ["User-Agent"] = "login-manager-bench",
    })
  end
  used = used + 1
  return wrk.format("GET", "/protected", {
    ["Host"] = host,
    ["Accept"] = "application/json",
    ["User-Agent"] = "login-manager-bench",
    ["Cookie"] = "remember_token=" .. tokens[used],
  })
end

function done(summary, latency, requests)
  local used_total, exhausted_total = 0, 0
  for _, t in ipairs(threads) do
    used_total = used_total + t:get("used")
    exhausted_total = exhausted_total + t:get("exhausted")
  end
  local e = summary.errors
  io.write(string.format(
    'RESULT {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"mean":%.1f,"p50":%d,"p90":%d,"p99":%d,"max":%d},' ..
    '"tokens_used":%d,"tokens_exhausted":%d}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, used_total, exhausted_total))
end
