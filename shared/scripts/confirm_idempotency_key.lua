-- Make an idempotency key name its job, now that the broker holds it (producers/idempotency.py).
-- KEYS[1]  the key
-- ARGV[1]  the caller's pending reservation (the value it set)   ARGV[2]  "<fingerprint>:<job id>"
-- ARGV[3]  TTL (s)
-- Returns  1 if confirmed, 0 if the key holds another producer's value.
-- Keeps    a producer confirms only its own reservation; one that vanished meanwhile (a Redis restart
--          without persistence) is set too: the job is on the broker, so the key must name it.
local value = redis.call('GET', KEYS[1])
if value == ARGV[1] or not value then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
  return 1
end
return 0
