-- heartbeat.lua: renew one agent's session in one client process, which keeps all of
-- that process's grants for the agent alive, and report which of the grants the client
-- believes it holds are gone.
--
-- KEYS[1]   the domain's key prefix (see _lib.lua)
-- ARGV[1-3] events cap, lock-delay ms, default capacity (see _lib.lua)
-- ARGV[4]   agent id
-- ARGV[5]   client id
-- ARGV[6]   session lease in ms
-- ARGV[7..] request ids of the grants the client holds for this agent
--
-- Returns a flat list {req, state, reason, ...} of those grants no longer held
-- (state "expired", "revoked", or "gone" once the record has been forgotten).

local agent, client, lease_ms = ARGV[4], ARGV[5], tonumber(ARGV[6])
local freed, agents = {}, {}
-- Reaping first: if this session already lapsed, its grants are freed and reported.
reap(freed, agents)
renew(client, agent, lease_ms, freed, agents)
hand_off(freed, agents)

local lost = {}
for i = 7, #ARGV do
  local v = redis.call('HMGET', rkey(ARGV[i]), 'state', 'reason')
  if v[1] ~= 'granted' then
    lost[#lost + 1] = ARGV[i]
    lost[#lost + 1] = v[1] or 'gone'
    lost[#lost + 1] = v[2] or ''
  end
end
return lost
