-- cancel.lua: a client withdraws its request (timeout, task cancelled): it leaves
-- every queue, or, if it was granted meanwhile, the grant is released. Waiters behind
-- it that can now go are granted.
--
-- KEYS[1]   the domain's key prefix (see _lib.lua)
-- ARGV[1-3] events cap, lock-delay ms, default capacity (see _lib.lua)
-- ARGV[4]   request id
-- ARGV[5]   reason, e.g. "timeout" or "cancelled"
--
-- Returns what the request was: "waiting" (now cancelled), "granted" (now released),
-- another end state, or "gone".

local req, reason = ARGV[4], ARGV[5]
local freed, agents = {}, {}
reap(freed, agents)

local r = load(req)
local was = r and r.state or 'gone'
if was == 'waiting' then
  drop_waiter(r, 'cancelled', reason, freed)
  emit('lock:cancelled', r, reason_field(reason))
elseif was == 'granted' then
  free_grant(r, 'released', reason, freed, agents)
  emit('lock:released', r, fence_field(r.fence) .. ',' .. reason_field(reason))
end
hand_off(freed, agents)
return was
