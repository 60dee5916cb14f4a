-- abort.lua: abort the chosen victim of a waits-for cycle, but only if every edge of
-- the cycle still holds. Two detectors racing over the same cycle thus abort one
-- victim, not two: after the first abort the cycle is broken and the second refuses.
--
-- KEYS[1]   the domain's key prefix (see _lib.lua)
-- ARGV[1-3] events cap, lock-delay ms, default capacity (see _lib.lua)
-- ARGV[4]   the victim's request id (a waiting request of the cycle)
-- ARGV[5]   the cycle as JSON [[from, to, kind], ...]
-- ARGV[6]   the cycle described for people (JSON), stored with the victim and logged
--
-- Returns 1 when the victim was aborted, 0 when the cycle no longer exists.

local victim = ARGV[4]
local function state(req) return redis.call('HGET', rkey(req), 'state') end

local function holds(e)
  local from, to, kind = e[1], e[2], e[3]
  if kind == 'task' then
    return state(from) == 'granted' and state(to) == 'waiting' and task_of(from) == task_of(to)
  end
  if state(from) ~= 'waiting' then return false end
  if kind == 'queued' then return state(to) == 'waiting' end
  if state(to) ~= 'granted' then return false end
  if kind == 'permit' then
    local agent = redis.call('HGET', rkey(from), 'agent')
    return in_use(agent) >= capacity(agent)
  end
  return true
end

local freed, agents = {}, {}
reap(freed, agents)
local ok = state(victim) == 'waiting'
for _, e in ipairs(cjson.decode(ARGV[5])) do
  if not ok then break end
  ok = holds(e)
end
if ok then
  local r = load(victim)
  redis.call('HSET', rkey(victim), 'cycle', ARGV[6])
  drop_waiter(r, 'aborted', 'deadlock', freed)
  emit('lock:deadlock', r, '"cycle":' .. ARGV[6])
end
hand_off(freed, agents)
return ok and 1 or 0
