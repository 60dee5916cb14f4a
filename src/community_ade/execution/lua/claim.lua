-- claim.lua: up to COUNT new messages for a consumer from the most urgent band that has
-- any, in one round trip (a worker read band by band, one XREADGROUP each). Never blocks:
-- when every band is empty the worker blocks on all three with XREADGROUP itself.
--
-- KEYS[1]  index    HASH  (unused here)
-- KEYS[2]  delayed  ZSET  (unused here)
-- KEYS[3]  dead     STREAM (unused here)
-- KEYS[4..6]  the band streams 0, 1, 2, each with the consumer group ARGV[1]
-- ARGV[1]  consumer group
-- ARGV[2]  consumer name
-- ARGV[3]  most messages to claim
--
-- Returns {band, {{entry id, {field, value, ...}}, ...}}, or {} when every band is empty.

for band = 0, #KEYS - 4 do
  local reply = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', ARGV[3],
    'STREAMS', KEYS[4 + band], '>')
  if reply and reply[1] and #reply[1][2] > 0 then
    return {band, reply[1][2]}
  end
end
return {}
