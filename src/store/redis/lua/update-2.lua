--[[ update-2.lua: compare-and-set of a flow. Mirrors MemoryStore.update (src/store/memory.ts); the checks run in
  the same order: missing, conflict, lease_lost, regress. Keeps the record's TTL.

  KEYS[1]  flow hash        {prefix}f:{deviceId}:rid   fields v, s, b, t (lease token), u (lease until, ms)
  KEYS[2]  device live set  {prefix}d:{deviceId}
  ARGV[1]  rid
  ARGV[2]  expected version
  ARGV[3]  next state
  ARGV[4]  next body (FlowCodec string)
  ARGV[5]  now (ms)
  ARGV[6]  lease token (optional; absent = no lease check)

  Returns  {'ok', newVersion}
           {'missing'}      no record (never created, or expired)
           {'conflict'}     the stored version is not ARGV[2]
           {'lease_lost'}   ARGV[6] given and the lease is not held with it, or ran out before now
           {'regress'}      the state rank would drop, or one result would replace another
]]
-- stateRank of src/core/flow.ts: 0 = live, 1 = finished with a result, 2 = acknowledged.
local function rank(state)
  if state == 'pending' then return 0 end
  if state == 'acked' then return 2 end
  return 1
end

local cur = redis.call('HMGET', KEYS[1], 'v', 's', 't', 'u')
if not cur[1] then
  return {'missing'}
end
if tonumber(cur[1]) ~= tonumber(ARGV[2]) then
  return {'conflict'}
end
local token = ARGV[6]
if token ~= nil and (cur[3] ~= token or tonumber(cur[4]) < tonumber(ARGV[5])) then
  return {'lease_lost'}
end
local from, to = rank(cur[2]), rank(ARGV[3])
if to < from or (from == 1 and to == 1 and ARGV[3] ~= cur[2]) then
  return {'regress'}
end

local version = redis.call('HINCRBY', KEYS[1], 'v', 1)
redis.call('HSET', KEYS[1], 's', ARGV[3], 'b', ARGV[4])
if to > 0 then
  -- Finished: no longer counts against the device's cap (an emptied set is deleted by Redis).
  redis.call('ZREM', KEYS[2], ARGV[1])
end
return {'ok', version}
