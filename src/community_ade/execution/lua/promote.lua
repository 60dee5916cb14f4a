-- promote.lua: move the retries whose backoff has passed from the delayed set onto their
-- band's stream, oldest due first.
--
-- KEYS[1]  index    HASH  task id -> "s <band> <entry id>" or "z <band>"
-- KEYS[2]  delayed  ZSET  task id -> due time (server ms)
-- KEYS[3]  dead     STREAM (unused here)
-- KEYS[4..6]  the band streams 0, 1, 2
-- ARGV[1]  most tasks to move in this call
--
-- Returns {moved, ms until the next due task or -1 when none is left}.

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
for _, task in ipairs(due) do
  redis.call('ZREM', KEYS[2], task)
  local band = tonumber(string.match(redis.call('HGET', KEYS[1], task) or '', '^z (%d)$') or '1')
  local id = redis.call('XADD', KEYS[4 + band], '*', 'task', task)
  redis.call('HSET', KEYS[1], task, 's ' .. band .. ' ' .. id)
end
local next_due = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
local wait = -1
if #next_due > 0 then
  wait = math.max(0, tonumber(next_due[2]) - now)
end
return {#due, wait}
