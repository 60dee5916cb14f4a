-- _lib.lua: shared functions of every lock script (scripts.py). On Redis >= 7 the library
-- and all scripts are loaded once as one Redis Functions library, each script a function
-- (FCALL); on Redis 6.2 this file is prepended to each script (EVALSHA). Either way each
-- script starts with begin(KEYS, ARGV). It reads nothing else by itself; each script's
-- header documents its own ARGV from ARGV[4] on. Every script receives:
--
--   KEYS[1]  the lock domain's key prefix, "ade:lock:{<domain>}:". Every key a script
--            touches is this prefix plus a suffix, so all of them share the hash tag
--            {<domain>} and live in one Redis Cluster slot:
--              seq          STRING  ticket/fence counter, floored by server time
--              r:<req>      HASH    a request: task agent client ticket res state
--                                   enq fence granted_at reason cycle, and wait (the
--                                   "w|" deadline, only when the wait is limited)
--              l:<rid>      ZSET    resource rid: holders (score 1 exclusive, 0 shared)
--                                   and waiters (score = ticket, always > 1), FIFO
--              qx:<rid>     ZSET    the exclusive waiters of rid: req -> ticket
--              dl           ZSET    deadlines (server ms): "s|<client> <agent>" the
--                                   session lease of one agent in one client process,
--                                   "w|<req>" a waiter gives up, "d|<req>" lock-delay
--                                   of an expired or revoked grant ends
--              cap          HASH    agent -> capacity (absent: the default)
--              ag:<agent>   ZSET    the agent's grants (its permits in use): req -> ticket
--              aw:<agent>   ZSET    the agent's waiting requests: req -> ticket
--              tw:<task>    ZSET    the task's waiting requests: req -> ticket
--              events       STREAM  lock:* events, capped (XADD MAXLEN ~)
--   ARGV[1]  events stream cap (approximate length)
--   ARGV[2]  lock-delay in ms: a grant that ends by expiry or force release keeps its
--            resources that much longer, since its holder may still be writing
--   ARGV[3]  default agent capacity
--
-- Wake-ups go to the channel "ade:lock:wake:<client>" (a channel, not a key) of the
-- process that owns the woken request: "<req> <fence>" when it was granted, else "<req>".
-- Numbers that may exceed 2^31 are formatted with int() before they reach a string,
-- since Lua's own conversion keeps only 14 digits.

-- Per-call inputs, set by begin(). As a Redis Function the library stays loaded between
-- calls, so begin() must reset everything one call may leave behind (the cached time).
local P, EVENTS_MAXLEN, LOCK_DELAY_MS, DEFAULT_CAPACITY, NOW_MS

local function begin(keys, argv)
  P = keys[1]
  EVENTS_MAXLEN = argv[1]
  LOCK_DELAY_MS = tonumber(argv[2])
  DEFAULT_CAPACITY = tonumber(argv[3])
  NOW_MS = nil
end

-- A request that ended without its owner's say stays this long (beyond its lock-delay)
-- so its owner can learn how it ended.
local TOMBSTONE_MS = 600000
-- Hand-off looks at most this many waiters per queue per call; any further ones are
-- reached by their own backstop re-check.
local HANDOFF_SCAN = 64
local REAP_BATCH = 16

-- Integral numbers as digits. '%d' formats a C long (64 bits here), exact below 2^53
-- and much cheaper than '%.0f'; Lua's own tostring keeps only 14 digits.
local function int(n)
  return string.format('%d', n)
end

local function now()
  if not NOW_MS then
    local t = redis.call('TIME')
    NOW_MS = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  end
  return NOW_MS
end

local function rkey(req) return P .. 'r:' .. req end
local function lkey(rid) return P .. 'l:' .. rid end

-- A request's fields, or nil when it does not exist.
local function load(req)
  local v = redis.call('HMGET', rkey(req), 'state', 'task', 'agent', 'client', 'ticket', 'res',
    'fence', 'wait')
  if not v[1] then return nil end
  return {id = req, state = v[1], task = v[2], agent = v[3], client = v[4],
          ticket = v[5], res_json = v[6], res = cjson.decode(v[6]), fence = v[7], wait = v[8]}
end

-- Append an event; the stream entry's id carries its time. r.res_json is the request's
-- resources as stored; fields: more JSON members, e.g. '"fence":"12"'.
local function emit(kind, r, fields)
  local data = '{"resources":' .. r.res_json
  if fields then data = data .. ',' .. fields end
  redis.call('XADD', P .. 'events', 'MAXLEN', '~', EVENTS_MAXLEN, '*',
    'type', kind, 'req', r.id, 'task', r.task, 'agent', r.agent, 'data', data .. '}')
end

-- JSON members for an event: a fence (digits) and a free-text reason.
local function fence_field(fence) return '"fence":"' .. fence .. '"' end
local function reason_field(reason) return '"reason":' .. cjson.encode(reason) end

-- A granted waiter's message carries its fence, so it needs no further round trip;
-- any other wake-up is the request id alone ("look at your request").
local function wake(r)
  local message = r.id
  if r.state == 'granted' then message = message .. ' ' .. r.fence end
  redis.call('PUBLISH', 'ade:lock:wake:' .. r.client, message)
end

-- Strictly increasing, and never below server time x 1024, so a restart or failover
-- that loses the counter cannot make tokens go backwards.
local function next_ticket()
  local n = tonumber(redis.call('INCR', P .. 'seq'))
  local floor = now() * 1024
  if n <= floor then
    n = floor + 1
    redis.call('SET', P .. 'seq', int(n))
  end
  return int(n)
end

local function task_of(req)
  return redis.call('HGET', rkey(req), 'task')
end

-- Do holders of rid conflict with mode for this task? A task's own live grants never
-- do (upgrades, re-entry); a grant in its lock-delay conflicts with everyone.
local function held_against(rid, mode, task)
  local holders = redis.call('ZRANGEBYSCORE', lkey(rid), (mode == 'x') and 0 or 1, 1)
  local conflict = false
  for _, h in ipairs(holders) do
    local v = redis.call('HMGET', rkey(h), 'state', 'task')
    if not v[1] then
      -- A holder entry whose record is gone holds nothing: clear it.
      redis.call('ZREM', lkey(rid), h)
    elseif v[1] ~= 'granted' or v[2] ~= task then
      conflict = true
    end
  end
  return conflict
end

-- Is a conflicting request queued ahead of this ticket on rid?
local function queued_ahead(rid, mode, ticket)
  if mode == 'x' then
    return redis.call('ZCOUNT', lkey(rid), 2, '(' .. ticket) > 0
  end
  return redis.call('ZCOUNT', P .. 'qx:' .. rid, '-inf', '(' .. ticket) > 0
end

local function capacity(agent)
  return tonumber(redis.call('HGET', P .. 'cap', agent) or DEFAULT_CAPACITY)
end

local function in_use(agent)
  return redis.call('ZCARD', P .. 'ag:' .. agent)
end

-- The uncontended case, decided without reaping: every resource idle (no holder, no
-- waiter, none in lock-delay), and a free permit. A stale entry of an expired session
-- can only make this say no; then the full path reaps first.
local function idle_for(r)
  for _, item in ipairs(r.res) do
    if redis.call('ZCARD', lkey(item[1])) > 0 then return false end
  end
  local used = in_use(r.agent)
  return used == 0 or used < capacity(r.agent)
end

-- All-or-nothing: every resource free for it in FIFO order, and a free permit.
local function can_grant(r)
  -- The resources are usually busy here (an idle set takes acquire's fast path), so
  -- they are looked at directly, without a ZCARD first.
  for _, item in ipairs(r.res) do
    local rid, mode = item[1], item[2]
    if held_against(rid, mode, r.task) or queued_ahead(rid, mode, r.ticket) then
      return false
    end
  end
  local used = in_use(r.agent)
  return used == 0 or used < capacity(r.agent)
end

local function leave_queues(r)
  for _, item in ipairs(r.res) do
    if item[2] == 'x' then redis.call('ZREM', P .. 'qx:' .. item[1], r.id) end
  end
  redis.call('ZREM', P .. 'aw:' .. r.agent, r.id)
  redis.call('ZREM', P .. 'tw:' .. r.task, r.id)
  if r.wait then redis.call('ZREM', P .. 'dl', 'w|' .. r.id) end
end

-- Make r a holder of all its resources. A new request's ticket is its fence; a
-- queued one takes a fresh fence and is woken.
local function grant(r, queued)
  if queued then
    leave_queues(r)
    r.fence = next_ticket()
  else
    r.fence = r.ticket
  end
  for _, item in ipairs(r.res) do
    -- Re-scoring the waiter entry turns it into a holder entry.
    redis.call('ZADD', lkey(item[1]), (item[2] == 'x') and 1 or 0, r.id)
  end
  redis.call('ZADD', P .. 'ag:' .. r.agent, r.ticket, r.id)
  local at = int(now())
  if queued then
    redis.call('HSET', rkey(r.id), 'state', 'granted', 'fence', r.fence, 'granted_at', at)
  else
    redis.call('HSET', rkey(r.id), 'state', 'granted', 'fence', r.fence, 'granted_at', at,
      'task', r.task, 'agent', r.agent, 'client', r.client, 'ticket', r.ticket,
      'res', r.res_json, 'enq', at)
  end
  r.state = 'granted'
  emit('lock:acquired', r, fence_field(r.fence) .. (queued and ',"queued":true' or ''))
  if queued then wake(r) end
end

local function mode_on(r, rid)
  for _, item in ipairs(r.res) do
    if item[1] == rid then return item[2] end
  end
  return nil
end

-- Grant, in ticket order, every waiter that has become grantable on these resources,
-- and the waiting requests of these agents that lacked a permit. Runs inside the
-- releasing script, so a woken waiter finds itself already granted.
local function hand_off(rids, agents)
  for rid, _ in pairs(rids) do
    local waiters = redis.call('ZRANGEBYSCORE', lkey(rid), 2, '+inf', 'LIMIT', 0, HANDOFF_SCAN)
    for _, w in ipairs(waiters) do
      local r = load(w)
      if r and r.state == 'waiting' then
        if can_grant(r) then grant(r, true) end
        -- Nothing queued behind an exclusive request can pass it, granted or not.
        if mode_on(r, rid) == 'x' then break end
      end
    end
  end
  for agent, _ in pairs(agents) do
    local waiters = redis.call('ZRANGE', P .. 'aw:' .. agent, 0, HANDOFF_SCAN - 1)
    for _, w in ipairs(waiters) do
      if in_use(agent) >= capacity(agent) then break end
      local r = load(w)
      if r and r.state == 'waiting' and can_grant(r) then grant(r, true) end
    end
  end
end

-- Take r off rid and remember rid for hand-off.
local function vacate(r, rid, freed)
  redis.call('ZREM', lkey(rid), r.id)
  freed[rid] = true
end

-- End a request's record: deleted when its owner ended it, otherwise kept with its end
-- state so the owner can learn what happened. `lingers`: the grant keeps its resources
-- for the lock-delay; its record then expires only once they are vacated (reap).
local function finish(r, state, reason, by_owner, lingers)
  r.state = state
  if by_owner then
    redis.call('DEL', rkey(r.id))
    return
  end
  redis.call('HSET', rkey(r.id), 'state', state, 'reason', reason or '')
  if not lingers then
    redis.call('PEXPIRE', rkey(r.id), TOMBSTONE_MS)
  end
end

-- End a grant. how: 'released' (by its owner), 'expired' (session lost) or 'revoked'
-- (force release). The permit is freed at once; after expiry or revocation the
-- resources stay taken for the lock-delay. The caller hands off.
local function free_grant(r, how, reason, freed, agents)
  redis.call('ZREM', P .. 'ag:' .. r.agent, r.id)
  agents[r.agent] = true
  local lingers = how ~= 'released' and LOCK_DELAY_MS > 0
  if lingers then
    redis.call('ZADD', P .. 'dl', int(now() + LOCK_DELAY_MS), 'd|' .. r.id)
  else
    for _, item in ipairs(r.res) do vacate(r, item[1], freed) end
  end
  finish(r, how, reason, how == 'released', lingers)
end

-- Take a waiting request out of every queue. state: 'cancelled' (by its owner),
-- 'expired' (session lost or gave up), 'aborted' (deadlock victim).
local function drop_waiter(r, state, reason, freed)
  leave_queues(r)
  for _, item in ipairs(r.res) do vacate(r, item[1], freed) end
  finish(r, state, reason, state == 'cancelled')
  if state ~= 'cancelled' then wake(r) end
end

-- The session of an agent in one client process: it keeps that process's grants and
-- waiting requests of the agent alive (a crashed process's grants expire even while
-- another process of the same agent lives on).
local function session_member(client, agent)
  return 's|' .. client .. ' ' .. agent
end

local function expire_session(client, agent, freed, agents)
  for _, req in ipairs(redis.call('ZRANGE', P .. 'ag:' .. agent, 0, -1)) do
    local r = load(req)
    if not r then
      redis.call('ZREM', P .. 'ag:' .. agent, req)
    elseif r.client == client then
      free_grant(r, 'expired', 'session lease expired', freed, agents)
      emit('lock:expired', r, fence_field(r.fence) .. ',' .. reason_field('session lease expired'))
      wake(r)
    end
  end
  for _, req in ipairs(redis.call('ZRANGE', P .. 'aw:' .. agent, 0, -1)) do
    local r = load(req)
    if r and r.client == client then
      drop_waiter(r, 'expired', 'session lease expired', freed)
      emit('lock:expired', r, reason_field('session lease expired'))
    end
  end
end

-- Lazy expiry of whatever deadline has passed: sessions, waits, lock-delays. Bounded.
local function reap(freed, agents)
  local due = redis.call('ZRANGEBYSCORE', P .. 'dl', '-inf', int(now()), 'LIMIT', 0, REAP_BATCH)
  for _, member in ipairs(due) do
    redis.call('ZREM', P .. 'dl', member)
    local kind, id = string.sub(member, 1, 1), string.sub(member, 3)
    if kind == 's' then
      local client, agent = string.match(id, '^(%S+) (.+)$')
      expire_session(client, agent, freed, agents)
    else
      local r = load(id)
      if kind == 'w' and r and r.state == 'waiting' then
        drop_waiter(r, 'expired', 'wait timed out', freed)
        emit('lock:cancelled', r, reason_field('wait timed out'))
      elseif kind == 'd' and r then
        for _, item in ipairs(r.res) do vacate(r, item[1], freed) end
        redis.call('PEXPIRE', rkey(id), TOMBSTONE_MS)
      end
    end
  end
end

-- Extend (never shorten) the agent's session. A session already past its lease is
-- expired first, never revived: its grants belong to a holder that may be gone. A
-- lease of 0 leaves the session as it is (the client's heartbeat renewed it lately).
local function renew(client, agent, lease_ms, freed, agents)
  if lease_ms > 0 then
    local member = session_member(client, agent)
    local deadline = redis.call('ZSCORE', P .. 'dl', member)
    if deadline and tonumber(deadline) <= now() then
      redis.call('ZREM', P .. 'dl', member)
      expire_session(client, agent, freed, agents)
    end
    redis.call('ZADD', P .. 'dl', 'GT', int(now() + lease_ms), member)
  end
end
