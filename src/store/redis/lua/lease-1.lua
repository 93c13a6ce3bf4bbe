--[[ lease-1.lua: take a flow's lease unless another token holds it and it has not run out.
  Mirrors MemoryStore.acquireLease (src/store/memory.ts).

  KEYS[1]  flow hash  {prefix}f:{deviceId}:rid   fields t (lease token), u (lease until, ms)
  ARGV[1]  token
  ARGV[2]  now (ms)
  ARGV[3]  leaseMs

  Returns  1  the lease is held with ARGV[1] until now + leaseMs
           0  no such flow, or another token holds a lease valid at now
]]
local cur = redis.call('HMGET', KEYS[1], 'v', 't', 'u')
if not cur[1] then
  return 0
end
if cur[2] and cur[2] ~= ARGV[1] and tonumber(cur[3]) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('HSET', KEYS[1], 't', ARGV[1], 'u', tonumber(ARGV[2]) + tonumber(ARGV[3]))
return 1
