-- wrk driver: POST /v1/analyses with the seed's Example 3, a new architecture every request.
--
-- The model's name (config.name) is made unique per run, thread and request (the second
-- argument names the run: the warm-up and the measured run must not send the same names), so
-- every body is a different architecture (a new sha256, a new row, a fresh analysis). Non-2xx
-- answers are counted and printed at the end with the latency percentiles in microseconds.
--
--   wrk -t2 -c32 -d20s --latency -s bench/wrk/analyses.lua http://127.0.0.1:8000 -- example3.json run1

local counter = 0
local prefix, suffix, run
local threads = {}

function setup(thread)
   thread:set("thread_id", #threads + 1)
   table.insert(threads, thread)
end

function init(args)
   local path = args[1] or "app/api/examples/seed_example3.json"
   run = args[2] or tostring(os.time())
   local file = assert(io.open(path, "rb"))
   local config = file:read("*a")
   file:close()
   -- The model name sits at "name": "<model>" of the top-level config; replace its first
   -- occurrence after the top-level "config" key with a placeholder.
   local marker = '"config": {"name": "'
   local at = config:find(marker, 1, true)
   if at == nil then
      marker = '"config":{"name":"'
      at = config:find(marker, 1, true)
   end
   assert(at, "could not find the model name in " .. path)
   local name_start = at + #marker
   local name_end = config:find('"', name_start, true)
   prefix = '{"architecture": ' .. config:sub(1, name_start - 1)
   suffix = config:sub(name_end) .. '}'
   wrk.method = "POST"
   wrk.headers["Content-Type"] = "application/json"
   non_2xx = 0
end

function request()
   counter = counter + 1
   local body = prefix .. "wrk_" .. run .. "_" .. thread_id .. "_" .. counter .. suffix
   return wrk.format(nil, "/v1/analyses", nil, body)
end

function response(status, headers, body)
   if status < 200 or status > 299 then
      non_2xx = non_2xx + 1
   end
end

function done(summary, latency, requests)
   local bad = 0
   for _, thread in ipairs(threads) do
      bad = bad + (thread:get("non_2xx") or 0)
   end
   io.write(string.format("CONVLENS requests=%d duration_us=%d non_2xx=%d errors_connect=%d "
      .. "errors_read=%d errors_write=%d errors_status=%d errors_timeout=%d "
      .. "p50_us=%d p90_us=%d p99_us=%d max_us=%d\n",
      summary.requests, summary.duration, bad, summary.errors.connect, summary.errors.read,
      summary.errors.write, summary.errors.status, summary.errors.timeout,
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
