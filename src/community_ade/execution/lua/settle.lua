-- settle.lua: finish with one claimed message: acknowledge and delete it, and either
-- stop there ("ack"), schedule the task again after a delay ("retry"), or record it in
-- the dead-letter stream ("dead"). One script, so a crash cannot ack without re-queueing.
--
-- KEYS[1]  index    HASH  task id -> "s <band> <entry id>" or "z <band>"
-- KEYS[2]  delayed  ZSET  task id -> due time (server ms)
-- KEYS[3]  dead     STREAM dead letters: task, band, entry, reason
-- KEYS[4..6]  the band streams 0, 1, 2
-- ARGV[1]  consumer group
-- ARGV[2]  band of the message (0, 1 or 2)
-- ARGV[3]  entry id of the message
-- ARGV[4]  task id
-- ARGV[5]  "ack" | "retry" | "dead"
-- ARGV[6]  retry: delay in ms; dead: the reason
-- ARGV[7]  dead: approximate length cap of the dead-letter stream
--
-- Returns 1 if the message was still pending (first settle), 0 if already settled.

local band, entry, task, mode = tonumber(ARGV[2]), ARGV[3], ARGV[4], ARGV[5]
local stream = KEYS[4 + band]
local acked = redis.call('XACK', stream, ARGV[1], entry)
redis.call('XDEL', stream, entry)
if redis.call('HGET', KEYS[1], task) == 's ' .. band .. ' ' .. entry then
  redis.call('HDEL', KEYS[1], task)
end
if mode == 'retry' then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('ZADD', KEYS[2], now + tonumber(ARGV[6]), task)
  redis.call('HSET', KEYS[1], task, 'z ' .. band)
elseif mode == 'dead' then
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[7], '*',
    'task', task, 'band', ARGV[2], 'entry', entry, 'reason', ARGV[6])
end
return acked
