-- Count a request in its tenant's one-second window, if it fits (producers/gateway/limits.py).
-- KEYS[1]  the window's counter (greenq:rate:<tenant>:<second>)
-- ARGV[1]  the request's cost (a batch: its number of jobs)   ARGV[2]  the limit per second
-- Returns  1 if counted (allowed), 0 if it would pass the limit.
-- Keeps    a refused request uses up nothing (a batch too big for what is left of this second, say);
--          the counter expires soon after its second.
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
if used + tonumber(ARGV[1]) > tonumber(ARGV[2]) then return 0 end
redis.call('INCRBY', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], 2)
return 1
