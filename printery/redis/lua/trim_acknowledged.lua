-- KEYS[1] the stream; ARGV[1] retention in ms; ARGV[2] '1': no group, no trim.
-- Returns {trimmed, length left, the MINID used or false}.
local have = redis.call('TYPE', KEYS[1])['ok']
if have == 'none' then return {0, 0, false} end
if have ~= 'stream' then
  return redis.error_reply('WRONGTYPE ' .. KEYS[1] .. ' holds a ' .. have .. ', not a stream')
end
-- Ids compared as digit strings: a sequence number can pass what a Lua number holds exactly.
local function below(a, b)
  if #a ~= #b then return #a < #b end
  return a < b
end
local function earlier(a, b)
  if a[1] ~= b[1] then return below(a[1], b[1]) end
  return below(a[2], b[2])
end
local function split(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return {ms, seq}
end
local function plus_one(digits)
  local out, i = {}, #digits
  for j = 1, #digits do out[j] = string.byte(digits, j) - 48 end
  while i >= 1 and out[i] == 9 do
    out[i] = 0
    i = i - 1
  end
  if i == 0 then return '1' .. table.concat(out) end
  out[i] = out[i] + 1
  return table.concat(out)
end
local function after(id)  -- the smallest id greater than id
  if id[2] == '18446744073709551615' then return {plus_one(id[1]), '0'} end
  return {id[1], plus_one(id[2])}
end
local now = redis.call('TIME')
local cutoff = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - tonumber(ARGV[1])
local length = redis.call('XLEN', KEYS[1])
if cutoff <= 0 then return {0, length, false} end
local bound = {string.format('%.0f', cutoff), '0'}
local groups = redis.call('XINFO', 'GROUPS', KEYS[1])
if #groups == 0 and ARGV[2] == '1' then return {0, length, false} end
for _, g in ipairs(groups) do
  local info = {}
  for i = 1, #g, 2 do info[g[i]] = g[i + 1] end
  local unread = after(split(info['last-delivered-id']))
  if earlier(unread, bound) then bound = unread end
  local summary = redis.call('XPENDING', KEYS[1], info['name'])
  if summary[1] > 0 then
    local held = split(summary[2])
    if earlier(held, bound) then bound = held end
  end
end
local min_id = bound[1] .. '-' .. bound[2]
local trimmed = redis.call('XTRIM', KEYS[1], 'MINID', min_id)
return {trimmed, length - trimmed, min_id}
