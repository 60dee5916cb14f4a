-- acquire.lua: ask, in one atomic step, for a set of resources for one task on behalf
-- of one agent; or, called again with the same request id, report (and retry) it.
--
-- KEYS[1]   the domain's key prefix (the keys under it: see _lib.lua)
-- ARGV[1-3] events cap, lock-delay ms, default capacity (see _lib.lua)
-- ARGV[4]   request id, chosen by the client, unique
-- ARGV[5]   task id
-- ARGV[6]   agent id
-- ARGV[7]   client id: wake-ups go to channel ade:lock:wake:<client>
-- ARGV[8]   session lease in ms: this call renews the session of (client, agent)
--           (0: the client's heartbeat renewed it lately, leave it)
-- ARGV[9]   wait: -1 without limit, 0 do not queue (try once), > 0 give up after that many ms
-- ARGV[10]  resources as JSON, [[rid, "x" | "s"], ...]
-- ARGV[11]  "1" on the client's first call for this request id: an idle resource set
--           is then granted without looking the request up
--
-- Returns one of
--   fence                         an integer: granted (the most frequent reply, so the
--                                 cheapest to send and to parse)
--   {"waiting", ticket, hint_ms}  hint_ms: the earliest a time-based blocker (a holder's
--                                 lease, a lock-delay) may clear; -1 when none is known
--   {"busy"}                      wait was 0 and it could not be granted at once
--   {state, reason, cycle}        the request ended: "expired", "aborted" (deadlock
--                                 victim; cycle is its JSON), "revoked", or "gone"

local req, task, agent, client = ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local lease_ms, wait_ms, first = tonumber(ARGV[8]), tonumber(ARGV[9]), ARGV[11] == '1'

-- Milliseconds until the domain's earliest deadline (a lease, a lock-delay, a wait), the
-- soonest any time-based blocker of this request can clear. It is never later than the
-- request's own blockers' deadlines, so at worst a waiter re-checks early; and it is one
-- call, where looking up each holder's lease cost three per resource (15 % of queueing).
local function hint()
  local earliest = redis.call('ZRANGE', P .. 'dl', 0, 0, 'WITHSCORES')[2]
  if not earliest then return -1 end
  return math.max(0, tonumber(earliest) - now())
end

local freed, agents = {}, {}
renew(client, agent, lease_ms, freed, agents)
-- The request as new; decoded once, for the fast path and for a first call's queueing.
local new = first and {id = req, task = task, agent = agent, client = client, state = 'new',
                       res_json = ARGV[10], res = cjson.decode(ARGV[10])}
if new and not next(agents) and idle_for(new) then
  new.ticket = next_ticket()
  grant(new, false)
  return tonumber(new.fence)
end

reap(freed, agents)
hand_off(freed, agents)

-- Loaded even on a first call: a retry after a lost reply finds its own request.
local r = load(req)
if r then
  if r.state == 'granted' then
    return tonumber(r.fence)
  end
  if r.state ~= 'waiting' then
    local v = redis.call('HMGET', rkey(req), 'reason', 'cycle')
    return {r.state, v[1] or '', v[2] or ''}
  end
  if can_grant(r) then
    grant(r, true)
    return tonumber(r.fence)
  end
  return {'waiting', r.ticket, hint()}
end
if not new then
  return {'gone', '', ''}
end

r = new
r.ticket = next_ticket()
if can_grant(r) then
  grant(r, false)
  return tonumber(r.fence)
end
if wait_ms == 0 then
  return {'busy'}
end

local fields = {'task', task, 'agent', agent, 'client', client, 'ticket', r.ticket,
                'res', ARGV[10], 'enq', int(now()), 'state', 'waiting'}
if wait_ms > 0 then
  -- The field "wait" tells leave_queues that there is a "w|" deadline to remove.
  local give_up = int(now() + wait_ms)
  fields[#fields + 1] = 'wait'
  fields[#fields + 1] = give_up
  redis.call('ZADD', P .. 'dl', give_up, 'w|' .. req)
end
redis.call('HSET', rkey(req), unpack(fields))
r.state = 'waiting'
for _, item in ipairs(r.res) do
  redis.call('ZADD', lkey(item[1]), r.ticket, req)
  if item[2] == 'x' then redis.call('ZADD', P .. 'qx:' .. item[1], r.ticket, req) end
end
redis.call('ZADD', P .. 'aw:' .. agent, r.ticket, req)
redis.call('ZADD', P .. 'tw:' .. task, r.ticket, req)
emit('lock:queued', r, '"ticket":"' .. r.ticket .. '"')
return {'waiting', r.ticket, hint()}
