-- Fetch one message for a consumer and record it as held, in one step (shared/redis_transport.py).
-- KEYS[1..n]  the queue lists, in fetch order (n = ARGV[1])
-- KEYS[n+1]   unacked (kombu's hash: delivery tag -> [message, exchange, routing key])
-- KEYS[n+2]   unacked_index (kombu's sorted set: tag by when fetched)
-- KEYS[n+3]   owners (greenq:unacked:owner: tag -> consumer)
-- KEYS[n+4]   the consumer's in-flight set (greenq:inflight:<consumer>)
-- KEYS[n+5]   consumers (greenq:consumers: consumer by last heartbeat, Redis time)
-- ARGV[1]     n, the number of queue lists
-- ARGV[2]     the consumer id
-- ARGV[3]     one flag per list: '1' records what it yields as held by the consumer; '0' is a no-ack
--             consumer's list (a control reply queue), whose messages nobody acks
-- Returns     {list, message} for the first list that had one, or nil.
-- Keeps       a message is always either queued or recorded as held by a named consumer, never
--             neither (the reliable-queue pattern). TIME comes before any write: a server that refuses
--             writes after it (script replication, Redis < 5) fails here having changed nothing. The
--             message leaves its list last, after its record is written, so an error while recording
--             (a key of the wrong type, say) leaves it queued rather than lost.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local n = tonumber(ARGV[1])
local unacked, index, owners, inflight, consumers = KEYS[n + 1], KEYS[n + 2], KEYS[n + 3], KEYS[n + 4], KEYS[n + 5]
for i = 1, n do
  local item = redis.call('LINDEX', KEYS[i], -1)
  if item then
    local ok, msg = pcall(cjson.decode, item)
    if string.sub(ARGV[3], i, i) == '1' and ok and type(msg) == 'table' and type(msg['properties']) == 'table' then
      local props = msg['properties']
      local tag = props['delivery_tag']
      if type(tag) == 'string' then
        local info = props['delivery_info']
        local exchange, routing_key = '', ''
        if type(info) == 'table' then
          if type(info['exchange']) == 'string' then exchange = info['exchange'] end
          if type(info['routing_key']) == 'string' then routing_key = info['routing_key'] end
        end
        local record = '[' .. item .. ',' .. cjson.encode(exchange) .. ',' .. cjson.encode(routing_key) .. ']'
        redis.call('HSET', unacked, tag, record)
        redis.call('ZADD', index, now, tag)
        redis.call('HSET', owners, tag, ARGV[2])
        redis.call('SADD', inflight, tag)
        redis.call('ZADD', consumers, now, ARGV[2])
      end
    end
    redis.call('RPOP', KEYS[i])
    return {KEYS[i], item}
  end
end
return false
