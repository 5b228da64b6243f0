-- KEYS[1] a hash, KEYS[2] its order hash (one slot); ARGV: field, value, order.
-- HSET field unless the order hash holds a later order for it (compared as text):
-- the latest request wins, not the last to finish. Running it twice with the same
-- arguments changes nothing the first run did not, so a redelivery may repeat it.
for _, key in ipairs(KEYS) do
  local have = redis.call('TYPE', key)['ok']
  if have ~= 'none' and have ~= 'hash' then
    return redis.error_reply('WRONGTYPE ' .. key .. ' holds a ' .. have .. ', not a hash')
  end
end
local seen = redis.call('HGET', KEYS[2], ARGV[1])
if seen and seen > ARGV[3] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
return 1
