local group, batch = ARGV[1], cjson.decode(ARGV[2])
local kinds = {  -- the type each op's key must hold (false: any); an op not here is refused
  XADD = 'stream', HSET = 'hash', HSET_LATEST = 'hash', RPUSH = 'list', SET_NX = 'string',
  EXPIRE = false
}
local arity = {  -- how many arguments each op takes (0: field/value pairs)
  XADD = {0}, HSET = {0}, HSET_LATEST = {4, 6}, RPUSH = {2}, SET_NX = {2}, EXPIRE = {1}
}
local whole = {RPUSH = 2, SET_NX = 2, EXPIRE = 1}  -- the argument that is a count or seconds
local function value(v)
  if type(v) == 'table' then return ARGV[v[1]] end  -- bytes that are not UTF-8
  return v
end
local function key_at(n)  -- every key is declared: the JSON names it by its index in KEYS
  if type(n) == 'number' then return KEYS[n] end
end
-- HSET_LATEST's arguments 3 and 5 (order key, order hash) are keys: declared
-- too, their indices in KEYS follow the arguments, as w[4] and w[5]
local refs = {HSET_LATEST = {3, 5}}
local none = {}
local function wrong(key, want)
  local have = redis.call('TYPE', key)['ok']
  if have ~= 'none' and have ~= want then
    return key .. ' holds a ' .. have .. ', not a ' .. want
  end
end
local function malformed(w)  -- what Redis would refuse in this write, or nil
  local op, key, args = w[1], key_at(w[2]), w[3]
  if kinds[op] == nil then return 'unknown output op ' .. tostring(op) end
  if type(key) ~= 'string' or key == '' then return op .. ': the key is not text' end
  if type(args) ~= 'table' then return op .. ' ' .. key .. ': no arguments' end
  local n = #args
  for j = 1, n do
    local t = type(args[j])
    if t == 'table' then t = type(value(args[j])) end
    if t ~= 'string' and t ~= 'number' then
      return op .. ' ' .. key .. ': argument ' .. j .. ' is not text'
    end
  end
  for at, j in ipairs(refs[op] or none) do
    if j <= n and not key_at(w[3 + at]) then
      return op .. ' ' .. key .. ': argument ' .. j .. ' is not text'
    end
  end
  local want = arity[op]
  if want[1] == 0 then
    if n == 0 or n % 2 == 1 then return op .. ' ' .. key .. ': ' .. n .. ' arguments' end
  elseif n ~= want[1] and n ~= want[2] then
    return op .. ' ' .. key .. ': ' .. n .. ' arguments'
  end
  local at = whole[op]
  if at then
    local number = tonumber(value(args[at]))
    if not number or number < 1 or number % 1 ~= 0 then
      return op .. ' ' .. key .. ': argument ' .. at .. ' is not a whole number from 1'
    end
  end
end
local acked = {}
for i, item in ipairs(batch) do
  local id, writes = item[1], item[2]
  -- A write that would fail (malformed, WRONGTYPE) must fail before the ack, never after.
  for _, w in ipairs(writes) do
    acked[i] = malformed(w)
    local want = kinds[w[1]]
    if not acked[i] and want then acked[i] = wrong(KEYS[w[2]], want) end
    if not acked[i] and w[1] == 'HSET_LATEST' then  -- its order hashes too
      local source = w[3][5] and KEYS[w[5]]
      acked[i] = wrong(KEYS[w[4]], 'hash') or (source and wrong(source, 'hash'))
    end
    if acked[i] then break end
  end
  if acked[i] == nil then acked[i] = redis.call('XACK', KEYS[1], group, id) end
  if acked[i] == 1 then
    for _, w in ipairs(writes) do
      local op, key, args = w[1], KEYS[w[2]], {}
      for j, v in ipairs(w[3]) do args[j] = value(v) end
      for at, j in ipairs(refs[op] or none) do
        if args[j] then args[j] = KEYS[w[3 + at]] end
      end
      if op == 'XADD' then
        redis.call('XADD', key, '*', unpack(args))
      elseif op == 'HSET' then
        redis.call('HSET', key, unpack(args))
      elseif op == 'HSET_LATEST' then
        -- field, value, order key, order[, order hash, order field]: a write ordered
        -- before the last one is dropped; the order hash's field, when set, is the order
        local order = args[4]
        if args[5] then order = redis.call('HGET', args[5], args[6]) or order end
        local seen = redis.call('HGET', args[3], args[1])
        if not seen or seen <= order then
          redis.call('HSET', key, args[1], args[2])
          redis.call('HSET', args[3], args[1], order)
        end
      elseif op == 'RPUSH' then
        redis.call('RPUSH', key, args[1])
        redis.call('LTRIM', key, -tonumber(args[2]), -1)
      elseif op == 'SET_NX' then
        redis.call('SET', key, args[1], 'NX', 'EX', args[2])
      elseif op == 'EXPIRE' then
        redis.call('EXPIRE', key, args[1])
      end
    end
  end
end
return acked
