-- enqueue.lua: put a task on its priority band's stream, unless it is already queued
-- (a message for it still in a stream, or a retry waiting in the delayed set).
-- Duplicates would be harmless (a worker ignores a task that is no longer APPROVED);
-- refusing them keeps the reconciler's periodic re-enqueue from flooding the streams.
--
-- KEYS[1]  index    HASH  task id -> "s <band> <entry id>" (in a stream) or "z <band>" (delayed)
-- KEYS[2]  delayed  ZSET  task id -> due time (server ms)
-- KEYS[3]  dead     STREAM dead letters (unused here; every queue script takes the same keys)
-- KEYS[4]  band 0 stream (priority <= 50), KEYS[5] band 1 (<= 100), KEYS[6] band 2 (the rest)
-- ARGV[1]  task id
-- ARGV[2]  band (0, 1 or 2)
--
-- Returns the new entry id, or "" when the task was already queued.

local task, band = ARGV[1], tonumber(ARGV[2])
local current = redis.call('HGET', KEYS[1], task)
if current then
  local kind, b, entry = string.match(current, '^(%a) (%d) ?(.*)$')
  if kind == 's' and #redis.call('XRANGE', KEYS[4 + tonumber(b)], entry, entry) > 0 then
    return ''
  end
  if kind == 'z' and redis.call('ZSCORE', KEYS[2], task) then
    return ''
  end
end
local id = redis.call('XADD', KEYS[4 + band], '*', 'task', task)
redis.call('HSET', KEYS[1], task, 's ' .. band .. ' ' .. id)
return id
