-- Put back deferred jobs whose release hold ran out before they were confirmed (shared/deferral.py).
-- KEYS[1]  releasing   KEYS[2]  jobs   KEYS[3]  due   KEYS[4]  waiting jobs per type   KEYS[5]  holder
-- ARGV[1]  now   ARGV[2]  at most this many holds looked at
-- Returns  {jobs put back, holds looked at}.
-- Keeps    a job whose scheduler died while releasing it is released again: it goes back to due at
--          its release_by and is counted as waiting again, with no holder.
local back = 0
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(ids) do
  redis.call('ZREM', KEYS[1], id)
  redis.call('HDEL', KEYS[5], id)
  local record = redis.call('HGET', KEYS[2], id)
  local ok, decoded = pcall(cjson.decode, record or '')
  if ok and type(decoded) == 'table' and type(decoded['release_by']) == 'number' then
    redis.call('ZADD', KEYS[3], decoded['release_by'], id)
    redis.call('HINCRBY', KEYS[4], decoded['job_type'], 1)
    back = back + 1
  end
end
return {back, #ids}
