-- wrk script: GET requests whose X-ApiKey header rotates through the
-- credentials of a file (one per line: a key, or a user:password pseudo-key).
--
--   wrk -t2 -c64 -d10s --latency -s bench/keys.lua URL -- KEYS_FILE
--
-- Requests are formatted once in init(); request() only hands out the next
-- one. There is no response() callback (wrk would then parse every response
-- into Lua and become the bottleneck): non-2xx responses are wrk's own count
-- (summary.errors.status, "Non-2xx or 3xx responses"). done() prints one
-- machine-readable BENCH line that bench/run.sh parses.

local threads = {}
local thread_count = 0

function setup(thread)
  thread:set("tid", thread_count)
  thread_count = thread_count + 1
  table.insert(threads, thread)
end

function init(args)
  local file = assert(args[1], "usage: -- KEYS_FILE")
  requests = {}
  for line in io.lines(file) do
    if line ~= "" then
      requests[#requests + 1] = wrk.format("GET", nil, { ["X-ApiKey"] = line })
    end
  end
  assert(#requests > 0, "no credentials in " .. file)
  -- Threads start at different places in the list.
  next_index = (tid * 7919) % #requests
end

function request()
  next_index = next_index % #requests + 1
  return requests[next_index]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d duration_us=%d p50_us=%d p99_us=%d non2xx=%d socket_errors=%d exhausted=0\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.status, e.connect + e.read + e.write + e.timeout))
end
