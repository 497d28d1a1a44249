-- Store a deferred job once, and count it as demand (shared/deferral.py).
-- KEYS[1]  jobs (hash: id -> record)   KEYS[2]  due (sorted set: id by release_by)
-- KEYS[3]  waiting jobs per type       KEYS[4]  arrivals of its submission slot (hash: window -> jobs)
-- ARGV[1]  job id   ARGV[2]  record JSON   ARGV[3]  release_by (Unix s)   ARGV[4]  job type
-- ARGV[5]  window (slots from its slot to release_by)   ARGV[6]  TTL of the arrivals hash (s)
-- Returns  1 if stored, 0 if the job was already stored (a retried defer: nothing changes).
-- Keeps    a job is stored, indexed and counted exactly once, together.
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
redis.call('HINCRBY', KEYS[3], ARGV[4], 1)
redis.call('HINCRBY', KEYS[4], ARGV[5], 1)
redis.call('EXPIRE', KEYS[4], ARGV[6])
return 1
