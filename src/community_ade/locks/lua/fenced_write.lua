-- fenced_write.lua: write a field of a Redis hash that a lock protects, refusing a
-- writer whose fencing token is older than one already seen (a paused holder whose
-- lease ran out). Standalone: it does not use _lib.lua.
--
-- KEYS[1]  the protected hash; its field "fence" keeps the newest token seen
-- ARGV[1]  the writer's fence
-- ARGV[2]  field to write
-- ARGV[3]  value
--
-- Returns {1, fence} when written, {0, newest} when refused.

local fence = tonumber(ARGV[1])
local newest = tonumber(redis.call('HGET', KEYS[1], 'fence') or '0')
if fence < newest then
  return {0, string.format('%.0f', newest)}
end
redis.call('HSET', KEYS[1], 'fence', ARGV[1], ARGV[2], ARGV[3])
return {1, ARGV[1]}
