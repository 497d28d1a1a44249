-- How many attempts of a job are open (shared/attempts.py).
-- KEYS[1]  the job's attempts set (greenq:attempts:<job id>)
-- Returns  the open attempts: the set's size, or an integer count from before per-attempt tokens
--          as it was (at least 0), or 0 when there is no key.
-- Keeps    nothing changes: a read.
local kind = redis.call('TYPE', KEYS[1]).ok
if kind == 'set' then return redis.call('SCARD', KEYS[1]) end
if kind == 'string' then return math.max(0, tonumber(redis.call('GET', KEYS[1])) or 0) end
return 0
