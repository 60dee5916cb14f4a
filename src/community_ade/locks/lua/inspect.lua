-- inspect.lua: a consistent snapshot of holders, queues, sessions and permits, for one
-- resource, one agent, or the whole domain. Finds everything through the deadline set (dl),
-- never KEYS or SCAN. Changes nothing but the lazy expiry every script does.
--
-- KEYS[1]   the domain's key prefix (see _lib.lua)
-- ARGV[1-3] events cap, lock-delay ms, default capacity (see _lib.lua)
-- ARGV[4]   "resource", "agent" or "all"
-- ARGV[5]   the resource or agent id (ignored for "all")
-- ARGV[6]   at most this many resources and agents for "all"
--
-- Returns a JSON document (numbers that may exceed 2^31 are strings).

local what, name, limit = ARGV[4], ARGV[5], tonumber(ARGV[6])
local freed, agents = {}, {}
reap(freed, agents)
hand_off(freed, agents)

local function request(req)
  local v = redis.call('HMGET', rkey(req), 'task', 'agent', 'ticket', 'fence', 'enq',
    'granted_at', 'state', 'client')
  local info = {request = req, task = v[1], agent = v[2], ticket = v[3], fence = v[4],
                enqueued_at = v[5], granted_at = v[6], state = v[7], client = v[8]}
  if v[8] and v[2] then
    info.lease_deadline = redis.call('ZSCORE', P .. 'dl', session_member(v[8], v[2])) or nil
  end
  return info
end

local function resource(rid)
  local holders, queue = {}, {}
  local h = redis.call('ZRANGEBYSCORE', lkey(rid), 0, 1, 'WITHSCORES')
  local delay_ms = 0
  for i = 1, #h, 2 do
    local info = request(h[i])
    info.mode = (h[i + 1] == '1') and 'exclusive' or 'shared'
    if info.state ~= 'granted' then
      info.lease_deadline = nil
      local ends = redis.call('ZSCORE', P .. 'dl', 'd|' .. h[i])
      if ends then delay_ms = math.max(delay_ms, tonumber(ends) - now()) end
    end
    holders[#holders + 1] = info
  end
  for _, w in ipairs(redis.call('ZRANGEBYSCORE', lkey(rid), 2, '+inf')) do
    local info = request(w)
    info.mode = redis.call('ZSCORE', P .. 'qx:' .. rid, w) and 'exclusive' or 'shared'
    queue[#queue + 1] = info
  end
  return {resource = rid, holders = holders, queue = queue,
          lock_delay_ms = delay_ms}
end

local function agent(id)
  local grants, waiting = {}, {}
  for _, req in ipairs(redis.call('ZRANGE', P .. 'ag:' .. id, 0, -1)) do
    grants[#grants + 1] = request(req)
  end
  for _, req in ipairs(redis.call('ZRANGE', P .. 'aw:' .. id, 0, -1)) do
    waiting[#waiting + 1] = request(req)
  end
  -- The agent's lease: the latest of its processes' sessions that hold or wait.
  local lease
  for _, list in ipairs({grants, waiting}) do
    for _, info in ipairs(list) do
      if info.lease_deadline and (not lease or tonumber(info.lease_deadline) > tonumber(lease)) then
        lease = info.lease_deadline
      end
    end
  end
  return {agent = id, lease_deadline = lease,
          capacity = capacity(id), in_use = in_use(id), grants = grants, waiting = waiting}
end

local doc
if what == 'resource' then
  doc = resource(name)
elseif what == 'agent' then
  doc = agent(name)
else
  -- Active resources are those of live requests (sessions' grants and waiters) and of
  -- grants in their lock-delay: all reachable from the deadline set, without SCAN.
  local resources, sessions, seen, agents_seen, session_count = {}, {}, {}, {}, 0
  local function add_resources(req)
    local raw = redis.call('HGET', rkey(req), 'res')
    if not raw then return end
    for _, item in ipairs(cjson.decode(raw)) do
      if not seen[item[1]] then
        seen[item[1]] = true
        if #resources < limit then resources[#resources + 1] = resource(item[1]) end
      end
    end
  end
  for _, member in ipairs(redis.call('ZRANGEBYSCORE', P .. 'dl', int(now()), '+inf')) do
    local kind, id = string.sub(member, 1, 1), string.sub(member, 3)
    local agent_id = (kind == 's') and string.match(id, '^%S+ (.+)$')
    if agent_id and not agents_seen[agent_id] then
      agents_seen[agent_id] = true
      session_count = session_count + 1
      local info = agent(agent_id)
      if session_count <= limit then sessions[#sessions + 1] = info end
      for _, g in ipairs(info.grants) do add_resources(g.request) end
      for _, w in ipairs(info.waiting) do add_resources(w.request) end
    elseif kind == 'd' then
      add_resources(id)
    end
  end
  local resource_count = 0
  for _ in pairs(seen) do resource_count = resource_count + 1 end
  doc = {resources = resources, sessions = sessions,
         resource_count = resource_count, session_count = session_count}
end
doc.now = int(now())
return cjson.encode(doc)
