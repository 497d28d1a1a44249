-- Write a dead letter, then trim the store to its bounds (shared/deadletter.py).
-- KEYS[1]  records (hash: id -> JSON)      KEYS[2]  index (sorted set: id by written at)
-- KEYS[3]  the count of records dropped by the bounds
-- ARGV[1]  record id   ARGV[2]  record JSON   ARGV[3]  written at (Unix s)
-- ARGV[4]  most records kept                  ARGV[5]  retention (s)
-- Returns  how many records this call dropped.
-- Keeps    the store bounded whatever a poison producer sends: records older than the retention go,
--          then the oldest beyond the most kept, each counted; all three keys expire one retention
--          after the last write. TIME comes before any write (see fetch_message.lua).
local now = tonumber(redis.call('TIME')[1])
local retention = tonumber(ARGV[5])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
local dropped = 0
local before = '(' .. string.format('%.0f', now - retention)
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', before)) do
  redis.call('HDEL', KEYS[1], id)
  dropped = dropped + 1
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', before)
local excess = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[4])
if excess > 0 then
  for _, id in ipairs(redis.call('ZRANGE', KEYS[2], 0, excess - 1)) do redis.call('HDEL', KEYS[1], id) end
  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, excess - 1)
  dropped = dropped + excess
end
if dropped > 0 then redis.call('INCRBY', KEYS[3], dropped) end
for i = 1, 3 do
  if redis.call('EXISTS', KEYS[i]) == 1 then redis.call('EXPIRE', KEYS[i], retention) end
end
return dropped
