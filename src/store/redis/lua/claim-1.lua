--[[ claim-1.lua: take the flows that are due and push each one's due time past the lease, so no other instance
  takes them within it. Mirrors MemoryStore.claimDue (src/store/memory.ts).

  KEYS[1]  schedule  {prefix}sched   sorted set 'deviceId/rid' -> due (ms)
  ARGV[1]  now (ms)
  ARGV[2]  leaseMs
  ARGV[3]  limit (> 0)

  Returns  the claimed members, earliest due first (ties in member order)
]]
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[3])
local untilMs = tonumber(ARGV[1]) + tonumber(ARGV[2])
for _, member in ipairs(due) do
  redis.call('ZADD', KEYS[1], 'XX', untilMs, member)
end
return due
