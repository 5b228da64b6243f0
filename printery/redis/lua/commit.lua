local group, batch = ARGV[1], cjson.decode(ARGV[2])
-- Per op: the type its key must hold (false: any), then either pairs (field/value
-- pairs after that many leading arguments) or the argument counts it takes, and
-- the arguments that are a count or seconds. An op not here is refused.
local ops = {
  XADD = {'stream', pairs = 0},
  HSET = {'hash', pairs = 0},
  HSET_LATEST = {'hash', 4, 6},
  RPUSH = {'list', 2, whole = {2}},
  SET_NX = {'string', 2, whole = {2}},
  EXPIRE = {false, 1, whole = {1}},
}
local concat, none = table.concat, {}
local MAX_ARGS = 7000  -- well within the Lua stack unpack() fills
-- HSET_LATEST's arguments 3 and 5 (order key, order hash) are keys: declared
-- too, their indices in KEYS follow the arguments, as w[4] and w[5]
local function text_args(op, key, args, n)
  -- table.concat takes only strings and numbers: one call in C for the usual case
  if pcall(concat, args) then return nil end
  for j = 1, n do
    local v = args[j]
    if type(v) == 'table' then  -- bytes that are not UTF-8, as their own argument
      local at = v[1]
      v = type(at) == 'number' and at > 2 and ARGV[at] or nil
      args[j] = v
    end
    local t = type(v)
    if t ~= 'string' and t ~= 'number' then
      return op .. ' ' .. key .. ': argument ' .. j .. ' is not text'
    end
  end
end
local function malformed(w)  -- what Redis would refuse in this write, or nil
  local op, key, args = w[1], KEYS[w[2]], w[3]
  local spec = ops[op]
  if spec == nil then return 'unknown output op ' .. tostring(op) end
  if type(key) ~= 'string' or key == '' then return op .. ': the key is not text' end
  if type(args) ~= 'table' then return op .. ' ' .. key .. ': no arguments' end
  local n = #args
  if n > MAX_ARGS then  -- unpack() would fail after the ack
    return op .. ' ' .. key .. ': ' .. n .. ' arguments, more than a script can pass (' .. MAX_ARGS .. ')'
  end
  local problem = text_args(op, key, args, n)
  if problem then return problem end
  if spec.pairs then
    local m = n - spec.pairs
    if m <= 0 or m % 2 == 1 then return op .. ' ' .. key .. ': ' .. n .. ' arguments' end
  elseif n ~= spec[2] and n ~= spec[3] then
    return op .. ' ' .. key .. ': ' .. n .. ' arguments'
  end
  for _, at in ipairs(spec.whole or none) do  -- digits Redis reads as they are, no overflow
    local digits = tostring(args[at])
    if #digits > 15 or not string.find(digits, '^[1-9]%d*$') then
      return op .. ' ' .. key .. ': argument ' .. at .. ' is not a whole number from 1 (15 digits at most)'
    end
  end
  if op == 'HSET_LATEST' then  -- the order key and hash, as declared
    args[3] = KEYS[w[4]]
    if not args[3] then return op .. ' ' .. key .. ': argument 3 is not text' end
    if n == 6 then
      args[5] = KEYS[w[5]]
      if not args[5] then return op .. ' ' .. key .. ': argument 5 is not text' end
    end
  end
end
-- The type each key was found fit for in this batch, and by which entry: a key
-- holds that type or nothing, since only a write of that type, checked, created it.
local fit, fit_by = {}, {}
local function wrong(key, want, i)
  local claimed = fit[key]
  if claimed == want then return nil end
  if claimed and fit_by[key] == i then
    return key .. ' is written as a ' .. claimed .. ' and as a ' .. want
  end
  local have = redis.call('TYPE', key)['ok']
  if have ~= 'none' and have ~= want then
    return key .. ' holds a ' .. have .. ', not a ' .. want
  end
  fit[key], fit_by[key] = want, i
end
local acked = {}
for i, item in ipairs(batch) do
  local id, writes = item[1], item[2]
  -- A write that would fail (malformed, WRONGTYPE) must fail before the ack, never after.
  for _, w in ipairs(writes) do
    local problem = malformed(w)
    local want = not problem and ops[w[1]][1]
    if want then
      local args = w[3]
      problem = wrong(KEYS[w[2]], want, i)
      if not problem and w[1] == 'HSET_LATEST' then  -- its order hashes too
        problem = wrong(args[3], 'hash', i) or (args[5] and wrong(args[5], 'hash', i))
      end
    end
    if problem then
      acked[i] = problem
      break
    end
  end
  if acked[i] == nil then acked[i] = redis.call('XACK', KEYS[1], group, id) end
  if acked[i] == 1 then
    for _, w in ipairs(writes) do
      local op, key, args = w[1], KEYS[w[2]], w[3]
      if op == 'XADD' then
        redis.call('XADD', key, '*', unpack(args))
      elseif op == 'HSET' then
        redis.call('HSET', key, unpack(args))
      elseif op == 'HSET_LATEST' then
        -- field, value, order key, order[, order hash, order field]: a write ordered
        -- before the last one is dropped; the order hash's field, when set, is the order
        local order = tostring(args[4])  -- compared as text, never as a number
        if args[5] then order = redis.call('HGET', args[5], args[6]) or order end
        local seen = redis.call('HGET', args[3], args[1])
        if not seen or seen <= order then
          redis.call('HSET', key, args[1], args[2])
          redis.call('HSET', args[3], args[1], order)
        end
      elseif op == 'RPUSH' then
        local cap = tonumber(args[2])
        if redis.call('RPUSH', key, args[1]) > cap then
          redis.call('LTRIM', key, -cap, -1)
        end
      elseif op == 'SET_NX' then
        redis.call('SET', key, args[1], 'NX', 'EX', args[2])
      elseif op == 'EXPIRE' then
        redis.call('EXPIRE', key, args[1])
      end
    end
  end
end
return acked
