local gone = {}
local consumers = redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])
for _, c in ipairs(consumers) do
  local info = {}
  for i = 1, #c, 2 do info[c[i]] = c[i + 1] end
  -- 'inactive' (Redis 7.2+, Valkey) is -1 for a consumer that never read successfully:
  -- then only 'idle' says how long it has been there.
  local inactive = info['inactive'] or info['idle']
  if inactive < 0 then inactive = info['idle'] end
  if info['pending'] == 0 and info['idle'] > tonumber(ARGV[2])
      and inactive > tonumber(ARGV[2])
      and redis.call('EXISTS', ARGV[3] .. info['name']) == 0 then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], info['name'])
    gone[#gone + 1] = info['name']
  end
end
return gone
