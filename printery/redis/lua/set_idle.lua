local out = {}
for i = 5, #ARGV, 1 do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if p[1] and p[1][2] == ARGV[2] then
    local count = p[1][4]
    if ARGV[4] == '1' and count > 0 then count = count - 1 end
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i],
      'IDLE', ARGV[3], 'RETRYCOUNT', count, 'JUSTID')
    out[#out + 1] = ARGV[i]
  end
end
return out
