-- A consumer's heartbeat (shared/redis_transport.py).
-- KEYS[1]  consumers   KEYS[2]  the consumer's in-flight set   KEYS[3]  owners   KEYS[4]  unacked_index
-- ARGV[1]  the consumer id
-- ARGV[2]  '1' if it holds messages locally
-- Returns  1 if it beat, 0 for a consumer that holds nothing and is not registered (it stays unregistered).
-- Keeps    a live consumer's messages are never given back: its score in consumers moves to now (Redis
--          time), and so does each held message's unacked_index score, so a stock kombu sweep
--          (`celery inspect`, Flower, any process without this transport), which requeues only entries
--          older than the visibility timeout, leaves them alone. Stale memberships are dropped.
if ARGV[2] ~= '1' and not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('ZADD', KEYS[1], now, ARGV[1])
for _, tag in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  if redis.call('HGET', KEYS[3], tag) == ARGV[1] then
    redis.call('ZADD', KEYS[4], 'XX', now, tag)
  else
    redis.call('SREM', KEYS[2], tag)
  end
end
return 1
