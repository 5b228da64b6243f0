local current = redis.call('GET', KEYS[1])
if current and not string.find(current, ARGV[1], 1, true) then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
