-- force_release.lua: an operator ends every grant on a resource (a stuck holder).
-- The holders' grants end whole (all their resources), their owners are told, and
-- the lock-delay applies before the next grant, since the old holder may still write.
--
-- KEYS[1]   the domain's key prefix (see _lib.lua)
-- ARGV[1-3] events cap, lock-delay ms, default capacity (see _lib.lua)
-- ARGV[4]   resource id
-- ARGV[5]   reason (required, recorded)
-- ARGV[6]   who asked
--
-- Returns the request ids whose grants were ended.

local rid, reason, actor = ARGV[4], ARGV[5], ARGV[6]
local freed, agents = {}, {}
reap(freed, agents)

local ended = {}
for _, h in ipairs(redis.call('ZRANGEBYSCORE', lkey(rid), 0, 1)) do
  local r = load(h)
  if r and r.state == 'granted' then
    free_grant(r, 'revoked', reason, freed, agents)
    emit('lock:force_released', r,
      fence_field(r.fence) .. ',' .. reason_field(reason) .. ',"actor":' .. cjson.encode(actor))
    wake(r)
    ended[#ended + 1] = h
  elseif not r then
    redis.call('ZREM', lkey(rid), h)
  end
end
hand_off(freed, agents)
return ended
