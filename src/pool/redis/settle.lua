-- Settling one attempt on its account and model keys: corrects the counts it reserved to what it
-- used, ends its reservation, and applies what its outcome says about health. The same rules as
-- `Counters::settle` and the `KeyState` transitions in Rust.
--
-- KEYS: 1 account hash, 2 account in-flight set, 3 model hash, 4 model in-flight set
-- ARGV: 1 reservation id ('' for usage admitted without Redis, added as it is), 2 the bucket's
--       second, 3 day index, 4 requests to add, 5 tokens to add (either may be negative), 6 key
--       TTL ms, 7 1 when the attempt was the half-open probe, 8 event ('' | ok | rate | quota |
--       down), 9 the key it is about (1 account, 2 model), 10 reason, 11 provider's retry hint ms
--       (-1: none), 12 quota: cooled until ms, 13 backoff base ms, 14 backoff max ms, 15 short
--       cooldown ms, 16 failures that open the breaker, 17 breaker open ms, 18 rpd, 19 tpd of
--       the event's key (-1: none)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local res, sec, day = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local dreq, dtok, key_ttl = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local SLOTS = 61

local function add(h, field, by)
  if by == 0 then return end
  if redis.call('HINCRBY', h, field, by) < 0 then redis.call('HSET', h, field, 0) end
end

for i = 1, 2 do
  local h, f = KEYS[i * 2 - 1], KEYS[i * 2]
  -- A reservation that already expired (or that Redis lost) keeps what it reserved: an upper bound.
  local live = res == '' or redis.call('ZREM', f, res) == 1
  if live then
    if sec > math.floor(now / 1000) - SLOTS then
      add(h, 'r' .. sec, dreq)
      add(h, 't' .. sec, dtok)
    end
    local kept = tonumber(redis.call('HGET', h, 'day'))
    if kept == nil or kept < day then
      redis.call('HSET', h, 'day', day, 'dr', math.max(0, dreq), 'dt', math.max(0, dtok))
    elseif kept == day then
      add(h, 'dr', dreq)
      add(h, 'dt', dtok)
    end
  end
  redis.call('PEXPIRE', h, key_ttl)
end

local function backoff(base, n, cap)
  return math.min(base * 2 ^ math.min(n, 20), cap)
end

-- Sets a cooldown, keeping a longer one already in place.
local function cool(h, kind, until_ms, reason)
  local current = tonumber(redis.call('HGET', h, 'cu'))
  if current and current > until_ms then return end
  redis.call('HSET', h, 'ck', kind, 'cu', until_ms, 'cr', reason)
end

local event, h = ARGV[8], KEYS[tonumber(ARGV[9]) * 2 - 1]
local reason = ARGV[10]
local base, max, short = tonumber(ARGV[13]), tonumber(ARGV[14]), tonumber(ARGV[15])
local failures_to_open, open = tonumber(ARGV[16]), tonumber(ARGV[17])
if event == 'ok' then
  for _, k in ipairs({KEYS[1], KEYS[3]}) do
    redis.call('HSET', k, 'cf', 0, 'bo', 0, 'rs', 0, 'dem', 0)
    redis.call('HDEL', k, 'probe')
    if redis.call('HGET', k, 'ck') == 'breaker-open' then redis.call('HDEL', k, 'ck', 'cu', 'cr') end
  end
elseif event == 'rate' then
  local strikes = tonumber(redis.call('HGET', h, 'rs')) or 0
  local wait = tonumber(ARGV[11])
  if wait < 0 then wait = backoff(base, strikes, max) end
  redis.call('HSET', h, 'rs', strikes + 1)
  cool(h, 'rate-limited', now + wait, reason)
elseif event == 'quota' then
  cool(h, 'quota-exhausted', tonumber(ARGV[12]), reason)
  if tonumber(redis.call('HGET', h, 'day')) ~= day then redis.call('HSET', h, 'day', day, 'dr', 0, 'dt', 0) end
  local learned = {tonumber(redis.call('HGET', h, 'lrpd')), tonumber(redis.call('HGET', h, 'ltpd'))}
  for w, field in ipairs({'dr', 'dt'}) do
    local configured = tonumber(ARGV[17 + w])
    if configured >= 0 then
      local limit = learned[w] or configured
      local used = tonumber(redis.call('HGET', h, field)) or 0
      redis.call('HSET', h, field, math.max(used, limit))
    end
  end
elseif event == 'down' then
  local failures = redis.call('HINCRBY', h, 'cf', 1)
  redis.call('HSET', h, 'dem', now + backoff(short, failures - 1, open))
  if ARGV[7] == '1' or failures >= failures_to_open then
    local opens = tonumber(redis.call('HGET', h, 'bo')) or 0
    redis.call('HSET', h, 'bo', opens + 1, 'ck', 'breaker-open',
      'cu', now + backoff(open, opens, math.max(max, open)),
      'cr', failures .. ' failures in a row, last: ' .. reason)
  end
end
if ARGV[7] == '1' then redis.call('HDEL', KEYS[1], 'probe') end
return 1
