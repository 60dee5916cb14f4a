-- relay_append.lua: append a batch of events from one source (the audit log, or one
-- lock domain's stream) to the events stream, each exactly once however many relays
-- offer it. An event is appended only when its source position is past the source's
-- cursor, and the cursor moves in the same call, so a second relay offering the same
-- rows appends nothing. Each appended event takes the next number of the one sequence
-- over all sources, and that number is its stream entry id "<seq>-0": a reader resumes
-- with XRANGE (<seq>.
--
-- KEYS[1]  events stream   STREAM  entries "<seq>-0": type, subject, e (the envelope
--                                   as JSON, without seq)
-- KEYS[2]  sequence        STRING  the last seq handed out
-- KEYS[3]  cursors         HASH    source -> position of the last event appended
-- KEYS[4]  epoch           STRING  server time when the sequence (re)started at 1: a
--                                   reader that sees it change knows the stream was
--                                   lost (e.g. Redis restarted without its data) and
--                                   its seqs start over
-- ARGV[1]  approximate length cap of the stream (XADD MAXLEN ~)
-- ARGV[2]  source name, e.g. "audit" or "lock:<domain>"
-- ARGV[3…] one group of four per event, in source order: position, type, subject,
--          envelope JSON. position: "<n>" (an audit seq) or "<ms>-<n>" (a lock stream
--          entry id), compared as numbers, part by part
--
-- Returns {appended count, last seq handed out (0 if none yet)}.

local function parse(position)
  local major, minor = string.match(position, '^(%d+)%-?(%d*)$')
  if not major then error('bad position ' .. position) end
  return {tonumber(major), tonumber(minor) or 0}
end

local function after(a, b)
  return a[1] > b[1] or (a[1] == b[1] and a[2] > b[2])
end

local source = ARGV[2]
local stored = redis.call('HGET', KEYS[3], source)
local cursor = stored and parse(stored) or nil
local appended, last_position = 0, nil
for i = 3, #ARGV, 4 do
  local position = parse(ARGV[i])
  if not cursor or after(position, cursor) then
    local seq = redis.call('INCR', KEYS[2])
    if seq == 1 then
      -- A new sequence: entries left from an older one would refuse its ids.
      local now = redis.call('TIME')
      redis.call('SET', KEYS[4], now[1] .. '.' .. now[2])
      redis.call('DEL', KEYS[1])
    end
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], string.format('%.0f-0', seq),
      'type', ARGV[i + 1], 'subject', ARGV[i + 2], 'e', ARGV[i + 3])
    cursor, last_position = position, ARGV[i]
    appended = appended + 1
  end
end
if last_position then redis.call('HSET', KEYS[3], source, last_position) end
return {appended, tonumber(redis.call('GET', KEYS[2]) or '0')}
