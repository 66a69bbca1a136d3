-- wrk script: POST the notification in BODY_FILE with Tiledesk's headers, the same body every
-- time (after the first, a receiver that de-duplicates answers from its retry cache only).
-- CONNECTION_CLOSE=1 adds "Connection: close", as Tiledesk's Node 18 sends. Output as
-- post-unique.lua: "status CODE: N" lines, "responses_2xx N", "p50_ms X p99_ms Y".
local f = io.open(os.getenv("BODY_FILE"), "r"); local body = f:read("*a"); f:close()
local threads = {}
function setup(thread) table.insert(threads, thread) end
wrk.method = "POST"
wrk.body = body
wrk.headers["Content-Type"] = "application/json"
wrk.headers["x-hook-secret"] = os.getenv("SECRET")
wrk.headers["User-Agent"] = "tiledesk-webhooks"
if os.getenv("CONNECTION_CLOSE") == "1" or os.getenv("CLOSE") == "1" then wrk.headers["Connection"] = "close" end
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
