-- Trues up one admitted call with its real token usage.
--
-- KEYS[i]    the counter of limit i, as in admit.lua (token limits only).
-- ARGV[4i-3] 'b' (token bucket) or 'c' (calendar window).
-- ARGV[4i-2] capacity.
-- ARGV[4i-1] actual minus reserved: negative returns the unused part, positive charges an
--            overshoot (a bucket may go negative: the debt delays later admissions).
-- ARGV[4i]   bucket: refill period in ms; calendar: unused (the key keeps its EXPIREAT).
--
-- A calendar key that is gone belongs to a window that has ended: nothing to adjust.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
for i = 1, #KEYS do
  local kind = ARGV[4 * i - 3]
  local cap = tonumber(ARGV[4 * i - 2])
  local diff = tonumber(ARGV[4 * i - 1])
  if kind == 'b' then
    local period = tonumber(ARGV[4 * i])
    local state = redis.call('HMGET', KEYS[i], 'l', 't')
    local level = cap
    if state[1] and state[2] then
      local elapsed = math.max(0, now - tonumber(state[2]))
      level = math.min(cap, tonumber(state[1]) + elapsed * cap / period)
    end
    level = math.min(cap, level - diff)
    if level >= cap then
      redis.call('DEL', KEYS[i])
    else
      redis.call('HSET', KEYS[i], 'l', string.format('%.17g', level), 't', string.format('%.17g', now))
      redis.call('PEXPIRE', KEYS[i], math.ceil((cap - level) * period / cap) + 1000)
    end
  elseif redis.call('EXISTS', KEYS[i]) == 1 then
    local used = redis.call('INCRBY', KEYS[i], diff)
    if used < 0 then
      redis.call('SET', KEYS[i], 0, 'KEEPTTL')
    end
  end
end
return 0
