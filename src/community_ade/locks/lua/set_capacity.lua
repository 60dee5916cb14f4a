-- set_capacity.lua: change how many grants an agent may hold at once; raising it
-- grants the agent's waiting requests that only lacked a permit.
--
-- KEYS[1]   the domain's key prefix (see _lib.lua)
-- ARGV[1-3] events cap, lock-delay ms, default capacity (see _lib.lua)
-- ARGV[4]   agent id
-- ARGV[5]   capacity (>= 1), or "default" to fall back to the default
--
-- Returns the capacity now in force.

local agent = ARGV[4]
if ARGV[5] == 'default' then
  redis.call('HDEL', P .. 'cap', agent)
else
  redis.call('HSET', P .. 'cap', agent, ARGV[5])
end
hand_off({}, {[agent] = true})
return capacity(agent)
