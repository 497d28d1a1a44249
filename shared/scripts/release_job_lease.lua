-- Give up a job lease that the caller still holds (workers/edge/leases.py).
-- KEYS[1]  the job's lease (greenq:lease:<job id>)
-- ARGV[1]  the holder's token
-- Returns  1 if deleted, 0 if another holder has it (or nobody does).
-- Keeps    a worker deletes only its own lease, never one another worker took after it lapsed.
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
