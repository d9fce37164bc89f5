-- Admission of one request on one account and one of its models, in one round trip: checks the
-- health and every quota window of both keys, and only if all pass reserves on both (a request in
-- each rolling-minute bucket, the estimated tokens, the day's counts, an in-flight reservation
-- that expires by itself). The same rules as `Counters::check` and `KeyState::health` in Rust.
--
-- KEYS: 1 account hash, 2 account in-flight set, 3 model hash, 4 model in-flight set,
--       5 instances seen (sorted by last seen), 6 epoch, 7 tracked keys (sorted by last use)
-- ARGV: 1 the epoch the caller knows, 2 an epoch to set if there is none, 3 instance id,
--       4 reservation id, 5 reservation TTL ms, 6 key TTL ms, 7 tokens that must fit (hard),
--       8 tokens reserved, 9 day index, 10 when that day ends (ms), 11 most tracked keys,
--       then per key (account, model): rpm, rpd, tpm, tpd, concurrent (-1: none), tracked (0/1)
-- Returns {1, now, instances, probe, demoted, account state..., model state...} when reserved,
--         {0, now, instances, reason, free at ms (-1: unknown), account state..., model state...}
--         when refused, {2, epoch} when the epoch is not the caller's (Redis lost its data).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local sec = math.floor(now / 1000)
local SLOTS = 61

local epoch = redis.call('GET', KEYS[6])
if not epoch then
  epoch = ARGV[2]
  redis.call('SET', KEYS[6], epoch)
end
if epoch ~= ARGV[1] then
  return {2, epoch}
end

redis.call('ZADD', KEYS[5], now, ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now - 60000)
local instances = redis.call('ZCARD', KEYS[5])

local res, res_ttl, key_ttl = ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6])
local hard, reserve = tonumber(ARGV[7]), tonumber(ARGV[8])
local day, next_day, max_tracked = tonumber(ARGV[9]), tonumber(ARGV[10]), tonumber(ARGV[11])

local function opt(v)
  v = tonumber(v)
  if v == nil or v < 0 then return nil end
  return v
end

-- One key's state: its live minute buckets, today's counts, in-flight count, health fields.
local function load(i)
  local s = {h = KEYS[i * 2 - 1], f = KEYS[i * 2], v = {}, mr = 0, mt = 0, buckets = {}}
  local flat = redis.call('HGETALL', s.h)
  for j = 1, #flat, 2 do s.v[flat[j]] = flat[j + 1] end
  local stale = {}
  for k, v in pairs(s.v) do
    local kind, at = string.match(k, '^([rt])(%d+)$')
    if kind then
      at = tonumber(at)
      if at <= sec - SLOTS then
        table.insert(stale, k)
      elseif at <= sec then
        local b = s.buckets[at] or {r = 0, t = 0}
        b[kind] = b[kind] + tonumber(v)
        s.buckets[at] = b
        if kind == 'r' then s.mr = s.mr + tonumber(v) else s.mt = s.mt + tonumber(v) end
      end
    end
  end
  if #stale > 0 then redis.call('HDEL', s.h, unpack(stale)) end
  if tonumber(s.v.day) == day then
    s.dr, s.dt = tonumber(s.v.dr) or 0, tonumber(s.v.dt) or 0
  else
    s.dr, s.dt = 0, 0
  end
  redis.call('ZREMRANGEBYSCORE', s.f, '-inf', now)
  s.inflight = redis.call('ZCARD', s.f)
  local base = 12 + (i - 1) * 6
  local learned = {opt(s.v.lrpm), opt(s.v.lrpd), opt(s.v.ltpm), opt(s.v.ltpd)}
  s.lim = {}
  for w = 1, 4 do
    local configured = opt(ARGV[base + w - 1])
    if configured then s.lim[w] = learned[w] or configured end
  end
  s.rpm, s.rpd, s.tpm, s.tpd = s.lim[1], s.lim[2], s.lim[3], s.lim[4]
  s.conc = opt(ARGV[base + 4])
  s.tracked = ARGV[base + 5] == '1'
  return s
end

-- When the oldest live bucket counting `kind` leaves the rolling minute.
local function frees_at(s, kind)
  local first = nil
  for at, b in pairs(s.buckets) do
    if b[kind] > 0 and (first == nil or at < first) then first = at end
  end
  if first == nil then return -1 end
  return (first + SLOTS) * 1000
end

-- nil when the key can take the request, else the reason and when it frees (-1: unknown).
local function health(s)
  local until_ms = tonumber(s.v.cu)
  if s.v.ck and until_ms and until_ms > now then
    return s.v.cr or s.v.ck, until_ms
  end
  if s.v.ck == 'breaker-open' then
    if (tonumber(s.v.probe) or 0) > now then return 'half-open: a probe is in flight', -1 end
    s.probe = true
  elseif (tonumber(s.v.dem) or 0) > now then
    s.demoted = true
  end
  return nil
end

local function windows(s)
  if s.conc and s.inflight >= s.conc then
    return s.conc .. ' concurrent requests in flight', -1
  end
  if s.rpm and s.mr + 1 > s.rpm then
    return 'RPM ' .. s.mr .. '/' .. s.rpm, frees_at(s, 'r')
  end
  if s.tpm then
    if hard > s.tpm then return 'request of ~' .. hard .. ' tokens exceeds TPM ' .. s.tpm, -1 end
    if s.mt + math.min(reserve, s.tpm) > s.tpm then
      return 'TPM ' .. s.mt .. '+' .. reserve .. '/' .. s.tpm, frees_at(s, 't')
    end
  end
  if s.rpd and s.dr + 1 > s.rpd then return 'RPD ' .. s.dr .. '/' .. s.rpd, next_day end
  if s.tpd then
    if hard > s.tpd then return 'request of ~' .. hard .. ' tokens exceeds TPD ' .. s.tpd, -1 end
    if s.dt + math.min(reserve, s.tpd) > s.tpd then
      return 'TPD ' .. s.dt .. '+' .. reserve .. '/' .. s.tpd, next_day
    end
  end
  for _, p in ipairs({'pwr', 'pwt'}) do
    local at = tonumber(s.v[p .. '_at'])
    if at and at <= now then
      redis.call('HDEL', s.h, p .. '_l', p .. '_r', p .. '_at')
      s.v[p .. '_r'] = nil
    end
  end
  local left_r, left_t = tonumber(s.v.pwr_r), tonumber(s.v.pwt_r)
  if left_r and left_r == 0 then return 'provider reports 0 requests left', tonumber(s.v.pwr_at) end
  if left_t and left_t < hard then return 'provider reports ' .. left_t .. ' tokens left', tonumber(s.v.pwt_at) end
  return nil
end

-- What the caller mirrors: use, today's counts, in flight, cooldown, demotion, learned limits.
local function state(s)
  return {s.mr, s.mt, s.dr, s.dt, s.inflight, s.v.ck or '', tonumber(s.v.cu) or -1, s.v.cr or '',
    tonumber(s.v.dem) or -1, tonumber(s.v.lrpm) or -1, tonumber(s.v.lrpd) or -1, tonumber(s.v.ltpm) or -1,
    tonumber(s.v.ltpd) or -1}
end

local function reply(head, a, m)
  for _, x in ipairs(state(a)) do table.insert(head, x) end
  for _, x in ipairs(state(m)) do table.insert(head, x) end
  return head
end

local acct, model = load(1), load(2)
for _, s in ipairs({acct, model}) do
  local why, free = health(s)
  if not why then why, free = windows(s) end
  if why then return reply({0, now, instances, why, free or -1}, acct, model) end
end

-- Everything fits: reserve on both keys.
for _, s in ipairs({acct, model}) do
  redis.call('HINCRBY', s.h, 'r' .. sec, 1)
  redis.call('HINCRBY', s.h, 't' .. sec, reserve)
  redis.call('HSET', s.h, 'day', day, 'dr', s.dr + 1, 'dt', s.dt + reserve)
  if s.v.pwr_r then redis.call('HSET', s.h, 'pwr_r', math.max(0, tonumber(s.v.pwr_r) - 1)) end
  if s.v.pwt_r then redis.call('HSET', s.h, 'pwt_r', math.max(0, tonumber(s.v.pwt_r) - reserve)) end
  redis.call('ZADD', s.f, now + res_ttl, res)
  redis.call('PEXPIRE', s.h, key_ttl)
  redis.call('PEXPIRE', s.f, key_ttl)
  s.mr, s.mt, s.dr, s.dt, s.inflight = s.mr + 1, s.mt + reserve, s.dr + 1, s.dt + reserve, s.inflight + 1
end
-- The half-open breaker lets one probe through; its mark expires with the reservation.
if acct.probe then redis.call('HSET', acct.h, 'probe', now + res_ttl) end

-- Keys that traffic made (callers' lanes, models only clients name) are bounded like in memory:
-- beyond the cap the least recently used go, down to 90% of it, never one with a request in flight.
for _, s in ipairs({acct, model}) do
  if s.tracked then redis.call('ZADD', KEYS[7], now, s.h) end
end
local over = redis.call('ZCARD', KEYS[7]) - max_tracked
if over > 0 then
  local excess = over + math.floor(max_tracked / 10)
  for _, h in ipairs(redis.call('ZRANGE', KEYS[7], 0, excess - 1)) do
    local f = string.gsub(h, ':s:', ':f:', 1)
    if redis.call('ZCOUNT', f, now, '+inf') == 0 then
      redis.call('DEL', h, f)
      redis.call('ZREM', KEYS[7], h)
    end
  end
end

local probe, demoted = 0, 0
if acct.probe then probe = 1 end
if acct.demoted or model.demoted then demoted = 1 end
return reply({1, now, instances, probe, demoted}, acct, model)
