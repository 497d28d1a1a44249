-- Look again at waiting callbacks, for notifications missed while no gateway listened
-- (producers/gateway/callbacks.py).
-- KEYS[1]  waiting   KEYS[2]  due   then per job, in ARGV's order: its callback record, its result key,
--          its owner record
-- ARGV[1]  now   ARGV[2]  the next sweep   ARGV[3]  least TTL (s) to keep   ARGV[4..]  job ids
-- Returns  the ids whose callback record is gone (it expired before its job finished).
-- Keeps    a job with a result has its callback due; a job with no result whose owner record lives is
--          still pending (a backlog may outlast the result TTL): its callback and owner records are kept
--          at least ARGV[3] more, so neither lapses before it finishes.
local gone = {}
local keep = tonumber(ARGV[3])
for i = 4, #ARGV do
  local id = ARGV[i]
  local at = 3 + (i - 4) * 3
  if redis.call('EXISTS', KEYS[at]) == 0 then
    redis.call('ZREM', KEYS[1], id)
    table.insert(gone, id)
  elseif redis.call('EXISTS', KEYS[at + 1]) == 1 then
    redis.call('ZREM', KEYS[1], id)
    redis.call('ZADD', KEYS[2], ARGV[1], id)
  else
    local owner = redis.call('TTL', KEYS[at + 2])
    if owner ~= -2 then
      if redis.call('TTL', KEYS[at]) < keep then redis.call('EXPIRE', KEYS[at], keep) end
      if owner >= 0 and owner < keep then redis.call('EXPIRE', KEYS[at + 2], keep) end
    end
    redis.call('ZADD', KEYS[1], 'XX', ARGV[2], id)
  end
end
return gone
