-- Admits one call against every limit that applies to it: all of them, or none.
--
-- KEYS[i]   the counter of limit i (all keys of one call share the app's hash tag).
-- ARGV[4i-3] 'b' (token bucket, a hash {l = level, t = last update in ms}),
--            'c' (calendar window, an integer counter) or
--            'm' (a money budget's window: a counter like 'c', never above its capacity).
-- ARGV[4i-2] capacity (tokens, or requests for a requests bucket).
-- ARGV[4i-1] amount to reserve.
-- ARGV[4i]   bucket: refill period in ms; calendar: Unix seconds at which the key expires.
--
-- Time is the server's (TIME), so the sidecars' clocks do not matter for buckets.
-- An amount above the capacity needs a full bucket / an unused token window (then it may
-- leave a debt), so a request bigger than the whole limit is not refused forever; a money
-- budget ('m') has no such exception: it is never overspent by a reservation.
-- A missing bucket key is a full bucket; bucket keys expire when they would be full again.
--
-- Reply: {0, left_1, ..., left_n}  admitted; what each limit has left after the reservation.
--        {1, i, wait_ms}           refused: bucket i needs the longest wait (exact, rounded up).
--        {2, i}                    refused: calendar window i cannot cover the amount.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local n = #KEYS
local levels = {}
local wait_ms, wait_i = 0, 0
for i = 1, n do
  local kind = ARGV[4 * i - 3]
  local cap = tonumber(ARGV[4 * i - 2])
  local need = tonumber(ARGV[4 * i - 1])
  if kind ~= 'm' then
    need = math.min(need, cap)
  end
  if kind == 'b' then
    local period = tonumber(ARGV[4 * i])
    local state = redis.call('HMGET', KEYS[i], 'l', 't')
    local level = cap
    if state[1] and state[2] then
      local elapsed = math.max(0, now - tonumber(state[2]))
      level = math.min(cap, tonumber(state[1]) + elapsed * cap / period)
    end
    levels[i] = level
    if level + 1e-6 < need then
      local wait = math.ceil((need - level) * period / cap)
      if wait > wait_ms then
        wait_ms, wait_i = wait, i
      end
    end
  else
    local used = tonumber(redis.call('GET', KEYS[i]) or '0')
    if used + need > cap then
      return {2, i}
    end
  end
end
if wait_i > 0 then
  return {1, wait_i, wait_ms}
end
local reply = {0}
for i = 1, n do
  local kind = ARGV[4 * i - 3]
  local cap = tonumber(ARGV[4 * i - 2])
  local amount = tonumber(ARGV[4 * i - 1])
  if kind == 'b' then
    local period = tonumber(ARGV[4 * i])
    local level = levels[i] - amount
    redis.call('HSET', KEYS[i], 'l', string.format('%.17g', level), 't', string.format('%.17g', now))
    redis.call('PEXPIRE', KEYS[i], math.ceil((cap - level) * period / cap) + 1000)
    reply[i + 1] = math.floor(level)
  else
    local used = redis.call('INCRBY', KEYS[i], amount)
    redis.call('EXPIREAT', KEYS[i], tonumber(ARGV[4 * i]))
    reply[i + 1] = cap - used
  end
end
return reply
