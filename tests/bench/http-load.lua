-- http-load.lua: the background load of tests/bench/http-load.sh, a wrk
-- script that keeps tasks running on tpool-server's five default pools
-- while the benchmark measures its GET routes.
--
-- Each request is POST /tasks/{pool} with a small piece of work. The
-- requests go round the list below, so every connection spreads its tasks
-- over all five pools. Most of the work sleeps, which keeps workers busy
-- without taking CPU from the server's loop; the cpu pool spins, briefly.
-- A connection waits for its task's reply before it sends the next one, so
-- at most `wrk -c` tasks run at a time and the rate is about that number
-- divided by the mean task time (~15 ms).
--
--   wrk -t1 -c8 -d30s -s tests/bench/http-load.lua http://127.0.0.1:PORT

local tasks = {
  {"io", '{"name":"bench_read","work":"sleep","ms":10}'},
  {"cpu", '{"name":"bench_spin","work":"spin","ms":2}'},
  {"inference", '{"name":"bench_infer","work":"sleep","ms":30}'},
  {"embedding", '{"name":"bench_embed","work":"sleep","ms":20}'},
  {"db", '{"name":"bench_query","work":"sleep","ms":10}'},
}

-- Each wrk thread has its own Lua state: its own copy of these.
local requests = {}
local next_request = 0

function init(args)
  local headers = {["Content-Type"] = "application/json"}
  for i, t in ipairs(tasks) do
    requests[i] = wrk.format("POST", "/tasks/" .. t[1], headers, t[2])
  end
end

function request()
  next_request = next_request % #requests + 1
  return requests[next_request]
end
