-- Undo a reservation whose job was certainly not pushed (producers/idempotency.py).
-- KEYS[1]  the key
-- ARGV[1]  the caller's pending reservation (the value it set)
-- Returns  1 if deleted, 0 if the key holds another value.
-- Keeps    a producer deletes only its own reservation, so a retry can enqueue the job.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
