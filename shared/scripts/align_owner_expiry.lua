-- Make a finished job's owner record expire with its result (producers/gateway/finished.py).
-- KEYS[1]  the owner record (greenq:owner:<job id>)   KEYS[2]  the job's result key
-- ARGV[1]  how much earlier than the result the owner record goes (ms)
-- Returns  1 if the owner record's expiry moved, 0 if not (no result with a TTL, no owner record, or
--          one that expires early enough already).
-- Keeps    the owner record never outlives the result (less ARGV[1]), so no read finds an owner
--          record naming a result that has gone (which would read `queued`); it is only ever shortened.
local left = redis.call('PTTL', KEYS[2])
if left < 0 then return 0 end
local owner = redis.call('PTTL', KEYS[1])
local wanted = math.max(1, left - tonumber(ARGV[1]))
if owner == -2 or (owner >= 0 and owner <= wanted) then return 0 end
redis.call('PEXPIRE', KEYS[1], wanted)
return 1
