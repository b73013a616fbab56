-- wrk script: durable deletes of distinct keys. Each request is a key
-- deleting itself: POST /api/api-keys/delete?id=ID with X-ApiKey: KEY.
--
--   wrk -tT -cC -d10s --latency -s bench/delete.lua URL -- PAIRS_FILE FIRST COUNT T C
--
-- PAIRS_FILE holds `ID KEY` lines; this run uses lines FIRST .. FIRST+COUNT-1
-- (1-based), split between the T threads so that no key is sent twice. A
-- thread stops before its share runs out (every connection may still hold
-- one request in flight), so a run ends early rather than repeat a key;
-- done() reports that as exhausted=1. There is no response() callback (it
-- would make wrk parse every response into Lua): non-2xx responses are wrk's
-- own count (summary.errors.status), and a repeated key would get 404.

local threads = {}
local thread_count = 0

function setup(thread)
  thread:set("tid", thread_count)
  thread_count = thread_count + 1
  table.insert(threads, thread)
end

function init(args)
  local file = assert(args[1], "usage: -- PAIRS_FILE FIRST COUNT THREADS CONNECTIONS")
  local first, count = tonumber(args[2]), tonumber(args[3])
  local nthreads, connections = tonumber(args[4]), tonumber(args[5])
  local share = math.floor(count / nthreads)
  local lo = first + tid * share
  local hi = lo + share - 1
  -- Connections of this thread, twice over: each may send one more request
  -- in the event-loop turn in which stop() is called.
  margin = 2 * math.ceil(connections / nthreads)
  requests = {}
  local n = 0
  for line in io.lines(file) do
    n = n + 1
    if n > hi then
      break
    end
    if n >= lo then
      local id, key = line:match("^(%d+) (%S+)$")
      assert(id, "bad line " .. n .. " in " .. file)
      requests[#requests + 1] = wrk.format("POST", "/api/api-keys/delete?id=" .. id, { ["X-ApiKey"] = key })
    end
  end
  assert(#requests > margin, "too few keys for this thread in " .. file)
  sent = 0
  exhausted = 0
end

function request()
  -- Never reached past the end thanks to the margin; a repeated key would
  -- get 404 and count as a failure, never as a success.
  sent = math.min(sent + 1, #requests)
  if #requests - sent <= margin and exhausted == 0 then
    exhausted = 1
    wrk.thread:stop()
  end
  return requests[sent]
end

function done(summary, latency, requests)
  local stopped = 0
  for _, t in ipairs(threads) do
    stopped = math.max(stopped, t:get("exhausted"))
  end
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d duration_us=%d p50_us=%d p99_us=%d non2xx=%d socket_errors=%d exhausted=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.status, e.connect + e.read + e.write + e.timeout, stopped))
end
