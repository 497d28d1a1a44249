-- A scheduler takes the deferred jobs to release now, under a release hold (shared/deferral.py).
-- KEYS[1]  due   KEYS[2]  releasing (sorted set: id by its hold's end)   KEYS[3]  jobs
-- KEYS[4]  waiting jobs per type   KEYS[5]  the slot's release counter   KEYS[6]  holder (id -> token)
-- ARGV[1]  now   ARGV[2]  the slot's allowance   ARGV[3]  the hold's end   ARGV[4]  counter TTL (s)
-- ARGV[5]  at most this many jobs   ARGV[6]  the hold's token
-- Returns  {id, record, id, record, ...}: every job already due (release_by <= now), then more in
--          deadline order while the slot's releases stay within the allowance; at most ARGV[5].
-- Keeps    one caller gets each job: a job moves from due to releasing, under this token, in the
--          same step that hands it out; the work per call is bounded whatever the backlog.
local due_now = redis.call('ZCOUNT', KEYS[1], '-inf', ARGV[1])
local used = tonumber(redis.call('GET', KEYS[5]) or '0')
local n = math.min(math.max(due_now, tonumber(ARGV[2]) - used), tonumber(ARGV[5]))
if n <= 0 then return {} end
local out = {}
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, n - 1)) do
  redis.call('ZREM', KEYS[1], id)
  local record = redis.call('HGET', KEYS[3], id)
  if record then
    redis.call('ZADD', KEYS[2], ARGV[3], id)
    redis.call('HSET', KEYS[6], id, ARGV[6])
    local ok, decoded = pcall(cjson.decode, record)
    if ok and type(decoded) == 'table' and type(decoded['job_type']) == 'string' then
      redis.call('HINCRBY', KEYS[4], decoded['job_type'], -1)
    end
    table.insert(out, id)
    table.insert(out, record)
  end
end
redis.call('INCRBY', KEYS[5], #out / 2)
redis.call('EXPIRE', KEYS[5], ARGV[4])
return out
