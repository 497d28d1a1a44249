-- Extend a release hold on the jobs it still holds (shared/deferral.py).
-- KEYS[1]  releasing   KEYS[2]  holder
-- ARGV[1]  the hold's token   ARGV[2]  its new end   ARGV[3..]  job ids
-- Returns  the ids still held (and extended).
-- Keeps    a job taken back (its hold ran out) or taken by another scheduler is not this hold's any
--          more: its score and holder are left alone.
local held = {}
for i = 3, #ARGV do
  local id = ARGV[i]
  if redis.call('HGET', KEYS[2], id) == ARGV[1] and redis.call('ZSCORE', KEYS[1], id) then
    redis.call('ZADD', KEYS[1], ARGV[2], id)
    table.insert(held, id)
  end
end
return held
