-- Extend a job lease that the caller still holds (workers/edge/leases.py).
-- KEYS[1]  the job's lease (greenq:lease:<job id>)
-- ARGV[1]  the holder's token
-- ARGV[2]  the new TTL, in milliseconds
-- Returns  1 if renewed, 0 if another holder has it (or nobody does).
-- Keeps    a worker extends only its own lease, never one another worker took after it lapsed.
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
