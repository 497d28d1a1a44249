-- Cancel a job no worker has started, and store its cancelled result (shared/start_marks.py).
-- KEYS[1]  the job's start mark (greenq:claim:<job id>: 'received' or 'cancelled')
-- KEYS[2]  the job's result key
-- ARGV[1]  'cancelled'
-- ARGV[2]  the encoded cancelled result
-- ARGV[3]  TTL in seconds
-- Returns  1: cancelled (now, or before); 0: a worker started it, or a result is stored.
-- Keeps    whoever sets the start mark first wins; a started job, or one whose result is stored
--          (its mark may have lapsed first), is left as it is and nothing is written.
local mark = redis.call('GET', KEYS[1])
if mark == ARGV[1] then return 1 end
if mark then return 0 end
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3])
redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3])
redis.call('PUBLISH', KEYS[2], ARGV[2])
return 1
