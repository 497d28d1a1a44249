-- Drop a held message's in-flight record: an ack, or a reject without requeue (shared/redis_transport.py).
-- KEYS[1]  unacked   KEYS[2]  unacked_index   KEYS[3]  owners   KEYS[4]  the consumer's in-flight set
-- ARGV[1]  the delivery tag
-- ARGV[2]  the consumer id
-- Returns  1 if the record was this consumer's and is gone, 0 if another consumer holds the tag now.
-- Keeps    a late ack of an old copy (given back, then fetched by another consumer under the same tag)
--          never deletes the new copy's record; only this consumer's stale membership goes, since left
--          behind the sweep would "give it back" forever.
local owner = redis.call('HGET', KEYS[3], ARGV[1])
if owner and owner ~= ARGV[2] then
  redis.call('SREM', KEYS[4], ARGV[1])
  return 0
end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('SREM', KEYS[4], ARGV[1])
return 1
