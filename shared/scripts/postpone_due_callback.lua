-- A due callback that cannot be sent now (its tenant has no room) is looked at again later
-- (producers/gateway/callbacks.py).
-- KEYS[1]  due   KEYS[2]  the callback's record
-- ARGV[1]  job id   ARGV[2]  now   ARGV[3]  when to look at it again (its new due score)
-- Returns  0 if postponed, -1 if the callback is not due (another gateway's attempt has it), -2 if its
--          record is gone (it leaves due).
-- Keeps    only a due callback moves: another gateway's attempt deadline is never shortened or lengthened.
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) > tonumber(ARGV[2]) then return -1 end
if redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('ZREM', KEYS[1], ARGV[1])
  return -2
end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
return 0
