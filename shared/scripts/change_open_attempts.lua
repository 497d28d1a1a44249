-- Open or close one attempt of a job (shared/attempts.py).
-- KEYS[1]  the job's attempts set (greenq:attempts:<job id>)
-- ARGV[1]  'open' or 'close'
-- ARGV[2]  the attempt's token
-- ARGV[3]  TTL of the set, in seconds
-- Returns  the attempts still open (SCARD).
-- Keeps    the count never negative and never without a TTL; opening or closing the same token
--          twice is the same as once, so a call sent again after a lost reply charges nothing twice.
--          A count from before per-attempt tokens (a plain integer) is first read as that many
--          open attempts.
if redis.call('TYPE', KEYS[1]).ok == 'string' then
  local before = math.max(0, tonumber(redis.call('GET', KEYS[1])) or 0)
  local ttl = redis.call('TTL', KEYS[1])
  redis.call('DEL', KEYS[1])
  for i = 1, before do redis.call('SADD', KEYS[1], 'before-upgrade:' .. i) end
  if before > 0 then redis.call('EXPIRE', KEYS[1], ttl > 0 and ttl or ARGV[3]) end
end
if ARGV[1] == 'open' then
  redis.call('SADD', KEYS[1], ARGV[2])
  redis.call('EXPIRE', KEYS[1], ARGV[3])
else
  redis.call('SREM', KEYS[1], ARGV[2])
end
return redis.call('SCARD', KEYS[1])
