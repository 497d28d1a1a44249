-- A gateway starts a delivery attempt on a due callback (producers/gateway/callbacks.py).
-- KEYS[1]  due (sorted set: job id by when to look at it next)   KEYS[2]  the callback's record (hash)
-- ARGV[1]  job id   ARGV[2]  now   ARGV[3]  the attempt's deadline (its new due score)
-- ARGV[4]  the result JSON   ARGV[5]  least TTL the record keeps (s)
-- Returns  the attempt's number (1 for the first), -1 if the callback is not due (another gateway's
--          attempt has it), -2 if its record is gone (it leaves due).
-- Keeps    one gateway at a time sends a callback: moving its due score to the attempt's deadline takes
--          it; if that gateway dies, the deadline passes and another gateway sends it again. The attempt
--          stores the result in the record and keeps the record at least until the next attempt could
--          start, so neither TTL ends it between attempts.
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) > tonumber(ARGV[2]) then return -1 end
if redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('ZREM', KEYS[1], ARGV[1])
  return -2
end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
redis.call('HSETNX', KEYS[2], 'result', ARGV[4])
if redis.call('TTL', KEYS[2]) < tonumber(ARGV[5]) then redis.call('EXPIRE', KEYS[2], ARGV[5]) end
return redis.call('HINCRBY', KEYS[2], 'attempts', 1)
