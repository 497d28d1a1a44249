-- Jobs whose results were just stored: their waiting callbacks become due (producers/gateway/callbacks.py).
-- KEYS[1]  waiting   KEYS[2]  due
-- ARGV[1]  now   ARGV[2..]  job ids
-- Returns  how many callbacks moved.
-- Keeps    only waiting callbacks move: one that is due (perhaps under another gateway's attempt) keeps
--          its score.
local woken = 0
for i = 2, #ARGV do
  if redis.call('ZREM', KEYS[1], ARGV[i]) == 1 then
    redis.call('ZADD', KEYS[2], ARGV[1], ARGV[i])
    woken = woken + 1
  end
end
return woken
