--[[ unlease-1.lua: give a flow's lease up if (and only if) ARGV[1] holds it: compare-and-delete.
  Mirrors MemoryStore.releaseLease (src/store/memory.ts).

  KEYS[1]  flow hash  {prefix}f:{deviceId}:rid   fields t (lease token), u (lease until, ms)
  ARGV[1]  token

  Returns  1  released
           0  not held with ARGV[1] (another holder, no lease, or no flow): nothing changed
]]
if redis.call('HGET', KEYS[1], 't') == ARGV[1] then
  redis.call('HDEL', KEYS[1], 't', 'u')
  return 1
end
return 0
