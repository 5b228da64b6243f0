-- KEYS[1] the stream, KEYS[1 + i] the heartbeat key of candidate ARGV[2 + i]:
-- each candidate is checked again here, atomically, before it is deleted.
local gone, info = {}, {}
for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local fields = {}
  for i = 1, #c, 2 do fields[c[i]] = c[i + 1] end
  info[fields['name']] = fields
end
local idle_ms = tonumber(ARGV[2])
for i = 3, #ARGV do
  local name, c = ARGV[i], info[ARGV[i]]
  if c then
    -- 'inactive' (Redis 7.2+, Valkey) is -1 for a consumer that never read successfully:
    -- then only 'idle' says how long it has been there.
    local inactive = c['inactive'] or c['idle']
    if inactive < 0 then inactive = c['idle'] end
    if c['pending'] == 0 and c['idle'] > idle_ms and inactive > idle_ms
        and redis.call('EXISTS', KEYS[i - 1]) == 0 then
      redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], name)
      gone[#gone + 1] = name
    end
  end
end
return gone
