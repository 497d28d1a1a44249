-- A due callback whose job has no final result waits for its notification (producers/gateway/callbacks.py).
-- KEYS[1]  due   KEYS[2]  waiting (sorted set: job id by its next sweep)   KEYS[3]  the callback's record
-- KEYS[4]  the job's result key
-- ARGV[1]  job id   ARGV[2]  now   ARGV[3]  when to look again if a result arrived meanwhile
-- ARGV[4]  its next sweep
-- Returns  1 if it moved to waiting, 0 if not (a result arrived: it stays due, looked at again at ARGV[3];
--          or it is not due any more: another gateway's attempt has it, and that stands).
-- Keeps    atomic with the result check, so a result stored after this finds it in waiting (its
--          notification wakes it): no callback waits for a notification that has already gone out.
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) > tonumber(ARGV[2]) then return 0 end
if redis.call('EXISTS', KEYS[4]) == 1 then
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
  return 0
end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
return 1
