-- One GCRA step, all or nothing, atomic because Redis runs a script to its end alone.
--
-- KEYS[1]  the bucket; its value is the theoretical arrival time (TAT), in microseconds since
--          the epoch
-- ARGV[1]  emission interval in microseconds (period / burst)
-- ARGV[2]  burst
-- ARGV[3]  cost, 1..=burst (checked by the caller)
--
-- Returns {1, remaining} when charged, {0, wait_us} when refused; a refusal writes nothing.
-- The same arithmetic as governor's keyed limiter, so in-process and Redis quotas agree.

-- Before Redis 5 a script that reads TIME may only write if it replicates its effects, not itself.
if redis.replicate_commands then
  redis.replicate_commands()
end

local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])

-- The server's clock, not the caller's: replicas with skewed clocks still agree on one TAT.
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])

-- How far the TAT may run ahead of now and still admit one more cell.
local tolerance = interval * (burst - 1)

-- A missing (expired) or unreadable key is a fresh bucket; a TAT in the past is as good as now.
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then
  tat = now
end

local earliest = tat + interval * (cost - 1) - tolerance
if earliest > now then
  return {0, earliest - now}
end

local new_tat = tat + interval * cost
-- The key is worth keeping only until its TAT passes; after that it equals a fresh bucket.
local ttl_ms = math.ceil((new_tat - now) / 1000)
-- '%.0f' writes the integer exactly; Lua's default number format would round it to 14 digits.
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', ttl_ms)
return {1, math.floor((tolerance + interval - (new_tat - now)) / interval)}
