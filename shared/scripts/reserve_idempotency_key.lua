-- Reserve an idempotency key for a producer about to push its job (producers/idempotency.py).
-- KEYS[1]  the key (greenq:idem:<job type>:<key>)
-- ARGV[1]  the payload's fingerprint   ARGV[2]  the job id for a fresh reservation
-- ARGV[3]  the reservation's token     ARGV[4]  ms until a pending reservation goes stale
-- ARGV[5]  the key's TTL (s)
-- Returns  {state, value, ms until stale}; state is 'mine' (this caller holds the pending reservation:
--          push, then confirm or release), 'enqueued' (the key names an enqueued job), 'busy' (another
--          producer is pushing the same payload) or 'conflict' (the key is held for another payload).
-- Keeps    one logical request is one job: a pending reservation is "pending:<fingerprint>:<job id>:
--          <token>:<stale at, Redis ms>", a confirmed one "<fingerprint>:<job id>"; a stale reservation of
--          the same payload is taken over with its job id (its producer may have pushed, then died), and a
--          retry after a lost reply (the same token) finds its own. Decides on Redis' clock, so producers'
--          clocks need not agree. Values written before job ids were stored ("<fingerprint>",
--          "pending:<fingerprint>:<token>") are read as they were.
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local value = redis.call('GET', KEYS[1])
local job = ARGV[2]
if value then
  local print_, held, token, stale_at = string.match(value, '^pending:([^:]*):([^:]*):([^:]*):(%d+)$')
  if not print_ then
    local legacy = string.match(value, '^pending:([^:]*):')
    local state = legacy and 'busy' or 'enqueued'
    if (legacy or string.match(value, '^([^:]*)')) ~= ARGV[1] then state = 'conflict' end
    return {state, value, legacy and math.max(0, redis.call('PTTL', KEYS[1])) or 0}
  end
  -- This very reservation, set by a call whose reply was lost: the caller's retry carries the same token.
  if token == ARGV[3] then return {'mine', value, math.max(0, tonumber(stale_at) - now_ms)} end
  if tonumber(stale_at) > now_ms then
    return {print_ == ARGV[1] and 'busy' or 'conflict', value, tonumber(stale_at) - now_ms}
  end
  -- Its producer died or stalled, perhaps after pushing: the same payload keeps that job's id.
  if print_ == ARGV[1] then job = held end
end
local reservation = 'pending:' .. ARGV[1] .. ':' .. job .. ':' .. ARGV[3] .. ':' .. (now_ms + tonumber(ARGV[4]))
redis.call('SET', KEYS[1], reservation, 'EX', ARGV[5])
return {'mine', reservation, tonumber(ARGV[4])}
