-- heartbeat.lua: renew one agent's session, which keeps all of its grants alive, and
-- report which of the grants its client believes it holds are gone.
--
-- KEYS[1]   the domain's key prefix (see _lib.lua)
-- ARGV[1-3] events cap, lock-delay ms, default capacity (see _lib.lua)
-- ARGV[4]   agent id
-- ARGV[5]   session lease in ms
-- ARGV[6..] request ids of the grants the client holds for this agent
--
-- Returns a flat list {req, state, reason, ...} of those grants no longer held
-- (state "expired", "revoked", or "gone" once the record has been forgotten).

local agent, lease_ms = ARGV[4], tonumber(ARGV[5])
local freed, agents = {}, {}
-- Reaping first: if this session already lapsed, its grants are freed and reported.
reap(freed, agents)
hand_off(freed, agents)
renew(agent, lease_ms)

local lost = {}
for i = 6, #ARGV do
  local v = redis.call('HMGET', rkey(ARGV[i]), 'state', 'reason')
  if v[1] ~= 'granted' then
    lost[#lost + 1] = ARGV[i]
    lost[#lost + 1] = v[1] or 'gone'
    lost[#lost + 1] = v[2] or ''
  end
end
return lost
