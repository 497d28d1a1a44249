-- Make a reservation stale at once: its push raised, but the job may be on the broker (producers/idempotency.py).
-- KEYS[1]  the key
-- ARGV[1]  the caller's pending reservation (the value it set)
-- Returns  1 if marked stale, 0 if the key holds another value.
-- Keeps    the reservation's job id and TTL: a retry with the same payload takes it over with the same
--          job id and no wait, so a job pushed twice is still one job.
local value = redis.call('GET', KEYS[1])
if value ~= ARGV[1] then return 0 end
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local head = string.match(value, '^(pending:[^:]*:[^:]*:[^:]*:)%d+$')
if not head then return 0 end
redis.call('SET', KEYS[1], head .. now_ms, 'KEEPTTL')
return 1
