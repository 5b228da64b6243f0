local meta = {replayed_from = true}
for _, name in ipairs(cjson.decode(ARGV[1])) do meta[name] = true end
local have = redis.call('TYPE', KEYS[2])['ok']
if have ~= 'none' and have ~= 'stream' then
  return redis.error_reply('WRONGTYPE ' .. KEYS[2] .. ' holds a ' .. have .. ', not a stream')
end
local out = {}
for i = 2, #ARGV do
  local id = ARGV[i]
  local found = redis.call('XRANGE', KEYS[1], id, id)
  if #found == 0 then
    out[#out + 1] = {id, 0, 'not in ' .. KEYS[1]}
  else
    local flat, args, from = found[1][2], {}, nil
    for j = 1, #flat, 2 do
      if flat[j] == 'original_stream' then from = flat[j + 1] end
      if not meta[flat[j]] then
        args[#args + 1] = flat[j]
        args[#args + 1] = flat[j + 1]
      end
    end
    if from and from ~= KEYS[2] then
      out[#out + 1] = {id, 0, 'dead-lettered from ' .. from .. ', not ' .. KEYS[2]}
    elseif #args == 0 then
      out[#out + 1] = {id, 0, 'no original fields (trimmed before it was dead-lettered)'}
    else
      args[#args + 1] = 'replayed_from'
      args[#args + 1] = id
      local new = redis.call('XADD', KEYS[2], '*', unpack(args))
      redis.call('XDEL', KEYS[1], id)
      out[#out + 1] = {id, 1, new}
    end
  end
end
return out
