"""The Lua scripts behind the adapter's multi-step operations, each atomic on the server.

- ``COMMIT``: per entry, XACK first, and only when it acked (returned 1)
  write the outputs; a whole batch of entries in one call, as one JSON
  argument. A commit retried after a timeout finds the message already acked
  and writes nothing, so an input never yields its outputs twice. Output keys
  of the wrong type are found before the ack, so a WRONGTYPE never leaves an
  ack without outputs. Unflagged scripts are refused under OOM only before
  their first write, so the script cannot stop between the ack and the
  outputs.
- ``SET_IDLE``: set the idle time of messages still owned by this consumer:
  to 0 (refresh), so a slow handler's message is not claimed by another while
  it runs; or to a long time (hand back), so a live consumer claims them at
  once on drain, optionally giving back the delivery the read counted.
- ``RECLAIM``: re-deliver an entry this consumer still owns (count + 1).
- ``HEARTBEAT`` / ``RELEASE``: the daemon's record, which doubles as the lock
  on its consumer name (written or deleted only by the token that holds it).
- ``FORGET_CONSUMER`` / ``REAP_CONSUMERS``: delete a consumer only while it
  has nothing pending (``XGROUP DELCONSUMER`` drops pending entries with it)
  and, for others, only when no daemon heartbeat claims the name: on Redis 7.0
  ``idle`` alone does not prove a consumer dead.
- ``TRIM_ACKNOWLEDGED``: retention (DESIGN §6). Reads every group's
  last-delivered id and lowest pending id and trims below the lowest of them
  and the age cutoff, in one step: a group reading or claiming between a
  check and a trim would otherwise lose the entries it was just handed.
- ``UNLOCK``: delete a lock only while it still holds our token.
- ``REPLAY_DEAD``: per dead letter, XADD its original fields (plus
  ``replayed_from``) to the original stream and XDEL it from ``<stream>:dead``
  in one step, so a dead letter is never both replayed and kept, nor lost.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "COMMIT",
    "FORGET_CONSUMER",
    "HEARTBEAT",
    "REAP_CONSUMERS",
    "RECLAIM",
    "RELEASE",
    "REPLAY_DEAD",
    "SET_IDLE",
    "TRIM_ACKNOWLEDGED",
    "UNLOCK",
]

COMMIT: Final = """
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
local function wrong(key, want)
  local have = redis.call('TYPE', key)['ok']
  if have ~= 'none' and have ~= want then
    return key .. ' holds a ' .. have .. ', not a ' .. want
  end
end
local function malformed(w)  -- what Redis would refuse in this write, or nil
  local op, key, args = w[1], w[2], w[3]
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
    if not acked[i] and want then acked[i] = wrong(w[2], want) end
    if not acked[i] and w[1] == 'HSET_LATEST' then  -- its order hashes too
      local source = w[3][5]
      acked[i] = wrong(value(w[3][3]), 'hash') or (source and wrong(value(source), 'hash'))
    end
    if acked[i] then break end
  end
  if acked[i] == nil then acked[i] = redis.call('XACK', KEYS[1], group, id) end
  if acked[i] == 1 then
    for _, w in ipairs(writes) do
      local op, key, args = w[1], w[2], {}
      for j, v in ipairs(w[3]) do args[j] = value(v) end
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
"""

SET_IDLE: Final = """
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
"""

RECLAIM: Final = """
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
if not p[1] or p[1][2] ~= ARGV[2] then return false end
return redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3])
"""

HEARTBEAT: Final = """
local current = redis.call('GET', KEYS[1])
if current and not string.find(current, ARGV[1], 1, true) then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
"""

RELEASE: Final = """
local current = redis.call('GET', KEYS[1])
if current and string.find(current, ARGV[1], 1, true) then redis.call('DEL', KEYS[1]) end
return 1
"""

FORGET_CONSUMER: Final = """
local p = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2])
if #p > 0 then return -1 end
return redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
"""

REAP_CONSUMERS: Final = """
local gone = {}
local consumers = redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])
for _, c in ipairs(consumers) do
  local info = {}
  for i = 1, #c, 2 do info[c[i]] = c[i + 1] end
  local inactive = info['inactive'] or info['idle']
  if info['pending'] == 0 and info['idle'] > tonumber(ARGV[2])
      and inactive > tonumber(ARGV[2])
      and redis.call('EXISTS', ARGV[3] .. info['name']) == 0 then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], info['name'])
    gone[#gone + 1] = info['name']
  end
end
return gone
"""

REPLAY_DEAD: Final = """
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
"""

TRIM_ACKNOWLEDGED: Final = """
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
"""

UNLOCK: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
