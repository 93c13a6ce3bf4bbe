--[[ create-4.lua: store a new flow unless (deviceId, rid) already has one, enforce the device's live-flow cap,
  reserve the user code and add the schedule entry, in one step. Mirrors MemoryStore.create (src/store/memory.ts).

  KEYS[1]  flow hash        {prefix}f:{deviceId}:rid   fields v (version), s (state), b (codec body)
  KEYS[2]  device live set  {prefix}d:{deviceId}       sorted set rid -> expiresAt of the device's pending flows
  KEYS[3]  schedule         {prefix}sched              sorted set 'deviceId/rid' -> due (ms)
  KEYS[4]  user-code index  {prefix}uc:<hash>          string 'deviceId/rid' (unused when ARGV[10] is '')
  ARGV[1]  rid
  ARGV[2]  state of the new flow
  ARGV[3]  body (FlowCodec string)
  ARGV[4]  now (ms, the gateway's clock; never Redis TIME)
  ARGV[5]  expiresAt (ms)
  ARGV[6]  graceMs: the record stays readable this long after expiresAt
  ARGV[7]  maxLive: refuse when the device already has this many pending flows not past expiresAt
  ARGV[8]  due (ms), or '' for no schedule entry
  ARGV[9]  schedule member 'deviceId/rid'
  ARGV[10] '1' to reserve KEYS[4] for this flow (SET NX), '' for no user code
  ARGV[11] user-code reservation TTL (ms)

  Returns  {'created', 1}
           {'exists', version, body}   a flow with this rid is stored: the request is a repeat
           {'limit'}                   the device is at its cap (nothing is scheduled)
           {'code_taken'}              another live flow holds the user code: nothing was written
  On 'created' and 'exists' the flow is scheduled at ARGV[8] unless it already has an entry (ZADD NX).
]]
local function schedule()
  if ARGV[8] ~= '' then
    redis.call('ZADD', KEYS[3], 'NX', ARGV[8], ARGV[9])
  end
end

local stored = redis.call('HMGET', KEYS[1], 'v', 'b')
if stored[1] then
  schedule()
  return {'exists', tonumber(stored[1]), stored[2]}
end

local now = tonumber(ARGV[4])
local expiresAt = tonumber(ARGV[5])

-- A pending flow counts until (and including) its expiresAt.
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[4])
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[7]) then
  return {'limit'}
end

if ARGV[10] ~= '' then
  if not redis.call('SET', KEYS[4], ARGV[9], 'NX', 'PX', ARGV[11]) then
    return {'code_taken'}
  end
end

redis.call('HSET', KEYS[1], 'v', 1, 's', ARGV[2], 'b', ARGV[3])
-- Relative TTL from the caller's clock; a non-positive TTL deletes the key (the flow is already gone).
redis.call('PEXPIRE', KEYS[1], math.ceil(expiresAt + tonumber(ARGV[6]) - now))

-- A flow already past expiresAt would not count; leaving it out also keeps the set from living without a TTL.
if ARGV[2] == 'pending' and expiresAt >= now then
  redis.call('ZADD', KEYS[2], expiresAt, ARGV[1])
  -- The set must outlive its longest-lived member; it disappears once every member is past expiresAt.
  local needed = math.ceil(expiresAt - now + 1)
  if redis.call('PTTL', KEYS[2]) < needed then
    redis.call('PEXPIRE', KEYS[2], needed)
  end
end
schedule()
return {'created', 1}
