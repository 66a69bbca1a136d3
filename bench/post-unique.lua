-- wrk script: POST the notification in BODY_FILE with Tiledesk's headers, each request a new
-- event: the last 8 hex digits of the payload's first "_id" carry a per-thread counter (same
-- length, the token still verifies: it covers the hook, not the payload). A receiver that
-- de-duplicates therefore stores and delivers every request, as it would in production.
-- CONNECTION_CLOSE=1 adds "Connection: close", as Tiledesk's Node 18 sends.
local f = io.open(os.getenv("BODY_FILE"), "r"); local body = f:read("*a"); f:close()
local s, e = string.find(body, '"_id":"', 1, true)
local id_end = e + 24
local head, tail = string.sub(body, 1, id_end - 8), string.sub(body, id_end + 1)
local threads = 0
function setup(thread) thread:set("tid", threads); threads = threads + 1 end
local n = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["x-hook-secret"] = os.getenv("SECRET")
wrk.headers["User-Agent"] = "tiledesk-webhooks"
if os.getenv("CONNECTION_CLOSE") == "1" then wrk.headers["Connection"] = "close" end
request = function()
  n = n + 1
  local b = head .. string.format("%01x%07x", tid or 0, n % 0x10000000) .. tail
  return wrk.format(nil, nil, nil, b)
end
local codes = {}
response = function(status, headers, body) codes[status] = (codes[status] or 0) + 1 end
done = function(summary, latency, requests)
  for k, v in pairs(codes) do io.write(string.format("status %d: %d\n", k, v)) end
  io.write(string.format("p50_ms %.3f p99_ms %.3f\n", latency:percentile(50)/1000, latency:percentile(99)/1000))
end
