-- Take a deferred job out before its release: a cancel (shared/deferral.py).
-- KEYS[1]  due   KEYS[2]  jobs   KEYS[3]  waiting jobs per type
-- ARGV[1]  job id
-- Returns  1 if the job was waiting and is withdrawn now, 0 if not (released, or never deferred).
-- Keeps    a job being released (in releasing, not due) is not withdrawn: it is on its way to its queue.
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
local record = redis.call('HGET', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
local ok, decoded = pcall(cjson.decode, record or '')
if ok and type(decoded) == 'table' and type(decoded['job_type']) == 'string' then
  redis.call('HINCRBY', KEYS[3], decoded['job_type'], -1)
end
return 1
