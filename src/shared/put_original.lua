-- Stores one original once, with the same caps as the directory store: each expires after the
-- age cap, and beyond the size cap the oldest go first (down to 90% of it).
--
-- KEYS: 1 the original's key, 2 index of stored ids by time, 3 their sizes, 4 total bytes
-- ARGV: 1 the text, 2 age cap ms, 3 size cap bytes, 4 the id, 5 the prefix of originals' keys
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl, max, id, prefix = tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4], ARGV[5]

local function forget(old)
  local size = tonumber(redis.call('HGET', KEYS[3], old)) or 0
  redis.call('DECRBY', KEYS[4], size)
  redis.call('HDEL', KEYS[3], old)
  redis.call('ZREM', KEYS[2], old)
end

if redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl, 'NX') then
  redis.call('ZADD', KEYS[2], now, id)
  redis.call('HSET', KEYS[3], id, #ARGV[1])
  redis.call('INCRBY', KEYS[4], #ARGV[1])
end
-- Those past the age cap have expired by themselves: only their accounting is left.
for _, old in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now - ttl)) do forget(old) end
if (tonumber(redis.call('GET', KEYS[4])) or 0) > max then
  for _, old in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
    if (tonumber(redis.call('GET', KEYS[4])) or 0) <= max * 0.9 then break end
    redis.call('DEL', prefix .. old)
    forget(old)
  end
end
return 1
