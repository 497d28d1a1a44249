-- Unregister a consumer that holds nothing and is silent (shared/redis_transport.py).
-- KEYS[1]  consumers   KEYS[2]  the consumer's in-flight set
-- ARGV[1]  the consumer id
-- ARGV[2]  the latest heartbeat (Redis time) that counts as silent; 1e308 after a clean close
-- Returns  1 if it was removed, 0 if it beat since, or holds messages.
-- Keeps    a consumer that heartbeats or fetches between the check and the removal stays registered:
--          one that holds a message outside consumers would never have it given back.
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) > tonumber(ARGV[2]) then return 0 end
if redis.call('SCARD', KEYS[2]) > 0 then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
return 1
