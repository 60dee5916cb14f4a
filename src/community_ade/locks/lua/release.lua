-- release.lua: the holder ends its grant, and waiters that can now go are granted in
-- the same step (hand-off). Idempotent: only the exact grant (request id and fence)
-- is released; a repeat, or a grant that already expired or was revoked, does nothing.
--
-- KEYS[1]   the domain's key prefix (see _lib.lua)
-- ARGV[1-3] events cap, lock-delay ms, default capacity (see _lib.lua)
-- ARGV[4]   request id
-- ARGV[5]   its fence
-- ARGV[6..] its resource ids (the client knows them; saves decoding the record)
--
-- Returns 1 when released, 0 when that grant was not held.

local req, fence = ARGV[4], ARGV[5]
local v = redis.call('HMGET', rkey(req), 'state', 'fence', 'agent', 'task', 'res')
if not (v[1] == 'granted' and v[2] == fence) then
  return 0
end
local r = {id = req, state = v[1], fence = v[2], agent = v[3], task = v[4], res_json = v[5], res = {}}
for i = 6, #ARGV do r.res[#r.res + 1] = {ARGV[i]} end
local freed, agents = {}, {}
free_grant(r, 'released', '', freed, agents)
emit('lock:released', r, fence_field(fence))
-- Only an agent with waiting requests can have one that lacked a permit.
if redis.call('EXISTS', P .. 'aw:' .. r.agent) == 0 then agents = {} end
hand_off(freed, agents)
return 1
