-- waits_for.lua: an atomic snapshot of the waits-for graph reachable from one waiting
-- request, for the pure cycle search in deadlock.py. Reads only.
--
-- KEYS[1]   the domain's key prefix (see _lib.lua)
-- ARGV[1-3] events cap, lock-delay ms, default capacity (see _lib.lua)
-- ARGV[4]   the waiting request to start from
-- ARGV[5]   at most this many nodes (the rest is reported as truncated)
--
-- Returns JSON {nodes = {req = {task, agent, ticket, state}}, edges = [{from, to,
-- kind, via}], truncated}. Edge kinds: holds, queued, permit, task (see deadlock.py).

local start, max_nodes = ARGV[4], tonumber(ARGV[5])
local nodes, edges, todo, count = {}, {}, {start}, 0
local truncated = false

local function visit(req)
  if nodes[req] then return nodes[req] end
  if count >= max_nodes then truncated = true; return nil end
  local v = redis.call('HMGET', rkey(req), 'task', 'agent', 'ticket', 'state')
  if not v[4] then return nil end
  count = count + 1
  nodes[req] = {task = v[1], agent = v[2], ticket = v[3], state = v[4]}
  todo[#todo + 1] = req
  return nodes[req]
end

local function edge(from, to, kind, via)
  if visit(to) then
    edges[#edges + 1] = {from = from, to = to, kind = kind, via = via}
  end
end

visit(start)
local i = 1
while i <= #todo do
  local req = todo[i]
  i = i + 1
  local r = load(req)
  if r and r.state == 'waiting' then
    for _, item in ipairs(r.res) do
      local rid, mode = item[1], item[2]
      for _, h in ipairs(redis.call('ZRANGEBYSCORE', lkey(rid), (mode == 'x') and 0 or 1, 1)) do
        -- A grant in its lock-delay clears by time alone: not a waits-for edge.
        local v = redis.call('HMGET', rkey(h), 'state', 'task')
        if v[1] == 'granted' and v[2] ~= r.task then edge(req, h, 'holds', rid) end
      end
      local ahead
      if mode == 'x' then
        ahead = redis.call('ZRANGEBYSCORE', lkey(rid), 2, '(' .. r.ticket)
      else
        ahead = redis.call('ZRANGEBYSCORE', P .. 'qx:' .. rid, '-inf', '(' .. r.ticket)
      end
      -- An earlier waiter blocks this one even when both are the same task's.
      for _, w in ipairs(ahead) do edge(req, w, 'queued', rid) end
    end
    if in_use(r.agent) >= capacity(r.agent) then
      for _, g in ipairs(redis.call('ZRANGE', P .. 'ag:' .. r.agent, 0, -1)) do
        edge(req, g, 'permit', r.agent)
      end
    end
  elseif r and r.state == 'granted' then
    for _, w in ipairs(redis.call('ZRANGE', P .. 'tw:' .. r.task, 0, -1)) do
      edge(req, w, 'task', r.task)
    end
  end
end
if #edges == 0 then
  return cjson.encode({nodes = nodes, truncated = truncated})
end
return cjson.encode({nodes = nodes, edges = edges, truncated = truncated})
