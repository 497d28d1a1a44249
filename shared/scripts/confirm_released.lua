-- Forget deferred jobs their scheduler has published to their queues (shared/deferral.py).
-- KEYS[1]  releasing   KEYS[2]  jobs   KEYS[3]  holder   KEYS[4]  due   KEYS[5]  waiting jobs per type
-- ARGV[1]  the hold's token   ARGV[2..]  job ids
-- Returns  how many were forgotten.
-- Keeps    a published job is not released again: one whose hold ran out and was taken back to due,
--          but not taken again, is taken out of due too (it is on its queue); one another scheduler
--          holds now is left to it.
local done = 0
for i = 2, #ARGV do
  local id = ARGV[i]
  local holder = redis.call('HGET', KEYS[3], id)
  if holder == ARGV[1] then
    redis.call('ZREM', KEYS[1], id)
    redis.call('HDEL', KEYS[2], id)
    redis.call('HDEL', KEYS[3], id)
    done = done + 1
  elseif not holder and redis.call('ZREM', KEYS[4], id) == 1 then
    local ok, decoded = pcall(cjson.decode, redis.call('HGET', KEYS[2], id) or '')
    if ok and type(decoded) == 'table' and type(decoded['job_type']) == 'string' then
      redis.call('HINCRBY', KEYS[5], decoded['job_type'], -1)
    end
    redis.call('HDEL', KEYS[2], id)
    done = done + 1
  end
end
return done
