-- Store a job's final result unless one is stored, and announce it (shared/result_store.py).
-- KEYS[1]  the result key (Celery's backend key for the job)
-- ARGV[1]  the encoded result, in Celery's format
-- ARGV[2]  TTL in seconds
-- Returns  1 if this call stored it, 0 if a result was there.
-- Keeps    the first writer wins and is never replaced; the PUBLISH that Celery's result consumers
--          (and the gateway's finished feed) listen for goes out only with the write.
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then
  redis.call('PUBLISH', KEYS[1], ARGV[1])
  return 1
end
return 0
