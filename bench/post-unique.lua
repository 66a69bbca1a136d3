-- wrk script: POST the notification in BODY_FILE with Tiledesk's headers, each request a new
-- event, as Tiledesk sends them: the last 8 hex digits of the payload's first "_id" carry a
-- per-thread counter, and the envelope's "timestamp" is the time of sending, as Tiledesk's
-- Date.now(), rising (os.time()'s second; the milliseconds climb with the requests sent in that
-- second). Same lengths; the token still verifies: it covers the hook, not the payload or the
-- timestamp. A receiver that de-duplicates therefore stores and
-- delivers every request, as it would in production; its de-duplication keys (hook, timestamp,
-- payload) come in time order, as Tiledesk's do, not thousands of events in one millisecond.
-- CONNECTION_CLOSE=1 adds "Connection: close", as Tiledesk's Node 18 sends.
local f = io.open(os.getenv("BODY_FILE"), "r"); local body = f:read("*a"); f:close()
local s, e = string.find(body, '"_id":"', 1, true)
local id_end = e + 24
local head, tail = string.sub(body, 1, id_end - 8), string.sub(body, id_end + 1)
local _, ts_at = string.find(head, '"timestamp":', 1, true)
local ts_len = string.find(head, "[^0-9]", ts_at + 1) - ts_at - 1
local before_ts, after_ts = string.sub(head, 1, ts_at), string.sub(head, ts_at + ts_len + 1)
local threads = {}
function setup(thread) thread:set("tid", #threads); table.insert(threads, thread) end
local n = 0
local second, in_second = 0, 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["x-hook-secret"] = os.getenv("SECRET")
wrk.headers["User-Agent"] = "tiledesk-webhooks"
if os.getenv("CONNECTION_CLOSE") == "1" or os.getenv("CLOSE") == "1" then wrk.headers["Connection"] = "close" end
request = function()
  n = n + 1
  local now = os.time()
  if now ~= second then second, in_second = now, 0 end
  in_second = in_second + 1
  local ts = string.format("%0" .. ts_len .. "d", now * 1000 + math.min(999, math.floor(in_second / 8)))
  local b = before_ts .. ts .. after_ts .. string.format("%01x%07x", tid or 0, n % 0x10000000) .. tail
  return wrk.format(nil, nil, nil, b)
end
-- Statuses are counted in each thread's own Lua state (a global there, so that done(), which
-- runs in the main state, can collect them with thread:get); done prints "status CODE: N" per
-- status, "responses_2xx N" and the "p50_ms X p99_ms Y" line that bench/lib.sh reads.
codes = {}
response = function(status, headers, body) codes[status] = (codes[status] or 0) + 1 end
done = function(summary, latency, requests)
  local all, ok = {}, 0
  for _, t in ipairs(threads) do
    for k, v in pairs(t:get("codes") or {}) do all[k] = (all[k] or 0) + v end
  end
  for k, v in pairs(all) do
    io.write(string.format("status %d: %d\n", k, v))
    if k >= 200 and k < 300 then ok = ok + v end
  end
  io.write(string.format("responses_2xx %d\n", ok))
  io.write(string.format("p50_ms %.3f p99_ms %.3f\n", latency:percentile(50)/1000, latency:percentile(99)/1000))
end
