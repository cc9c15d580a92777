/**
 * The Lua scripts behind the shared state. Each runs atomically in Redis, so
 * a check and the write it guards can never be split by another replica:
 *
 * - PUBLISH_SNAPSHOT: the fencing token must equal the current lease's token
 *   AND the version must be above the stored one; only then is the snapshot
 *   replaced and its version announced on the channel;
 * - ACQUIRE_LEASE / RENEW_LEASE / RELEASE_LEASE: the trainer lease, with a
 *   fencing token from INCR (see lease.ts);
 * - ACK_EXAMPLES: XACK one id at a time and return the ids this call removed
 *   from the consumer group's pending list, so that an example is counted by
 *   exactly one consumer even when two overlap during a handover.
 *
 * Scripts are sent by SHA (EVALSHA) and loaded with EVAL only when the server
 * does not know them (NOSCRIPT: a new or restarted server).
 */
import { createHash } from "node:crypto";
import type { Redis } from "ioredis";

type ScriptArg = string | Buffer | number;

export class LuaScript {
  readonly sha: string;

  constructor(
    readonly name: string,
    readonly lua: string,
    readonly numberOfKeys: number,
  ) {
    this.sha = createHash("sha1").update(lua).digest("hex");
  }

  async run(redis: Redis, keys: readonly string[], args: readonly ScriptArg[]): Promise<unknown> {
    if (keys.length !== this.numberOfKeys) {
      throw new Error(`script ${this.name} takes ${this.numberOfKeys} keys, got ${keys.length}`);
    }
    try {
      return await redis.evalsha(this.sha, this.numberOfKeys, ...keys, ...args);
    } catch (err) {
      if (!(err instanceof Error && err.message.includes("NOSCRIPT"))) throw err;
      return await redis.eval(this.lua, this.numberOfKeys, ...keys, ...args);
    }
  }
}

/**
 * KEYS: snapshot hash, lease. ARGV: version, fencing token, channel, then the
 * hash's field/value pairs. Returns {accepted 0|1, reason, version} where
 * version is the stored one after the call. A stored version that is not a
 * safe non-negative integer, or a snapshot key of another type, counts as no
 * snapshot: an accepted publish repairs it.
 */
export const PUBLISH_SNAPSHOT = new LuaScript(
  "publish-snapshot",
  `
local current = 0
if redis.call('TYPE', KEYS[1]).ok == 'hash' then
  current = tonumber(redis.call('HGET', KEYS[1], 'version'))
  if not current or current ~= math.floor(current) or current < 0 or current > 9007199254740991 then
    current = 0
  end
end
local token = nil
if redis.call('TYPE', KEYS[2]).ok == 'string' then
  token = string.match(redis.call('GET', KEYS[2]), '^(%d+) ')
end
if not token then return {0, 'no-lease', current} end
if token ~= ARGV[2] then return {0, 'stale-token', current} end
local version = tonumber(ARGV[1])
if not version or version <= current then return {0, 'stale-version', current} end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
redis.call('PUBLISH', ARGV[3], ARGV[1])
return {1, 'accepted', version}
`,
  2,
);

/**
 * KEYS: lease, token counter. ARGV: holder id, ttl ms. Returns {1, token} when
 * acquired, else {0, pttl ms, current value}. A lease value we could not have
 * written (wrong type, unparsable, or without expiry) is taken over, so junk
 * under the key cannot block training forever.
 */
export const ACQUIRE_LEASE = new LuaScript(
  "acquire-lease",
  `
local kind = redis.call('TYPE', KEYS[1]).ok
if kind == 'string' then
  local value = redis.call('GET', KEYS[1])
  local pttl = redis.call('PTTL', KEYS[1])
  if string.match(value, '^%d+ .') and pttl > 0 then
    return {0, pttl, value}
  end
end
if kind ~= 'none' then redis.call('DEL', KEYS[1]) end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], string.format('%d', token) .. ' ' .. ARGV[1], 'NX', 'PX', ARGV[2])
return {1, token}
`,
  2,
);

/** KEYS: lease. ARGV: the holder's lease value, ttl ms. 1 if renewed, 0 if no longer the holder. */
export const RENEW_LEASE = new LuaScript(
  "renew-lease",
  `
if redis.call('TYPE', KEYS[1]).ok == 'string' and redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
`,
  1,
);

/** KEYS: lease. ARGV: the holder's lease value. 1 if released, 0 if it was not ours (any more). */
export const RELEASE_LEASE = new LuaScript(
  "release-lease",
  `
if redis.call('TYPE', KEYS[1]).ok == 'string' and redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`,
  1,
);

/** KEYS: stream. ARGV: group, then entry ids. Returns the ids this call acknowledged. */
export const ACK_EXAMPLES = new LuaScript(
  "ack-examples",
  `
local acked = {}
for i = 2, #ARGV do
  if redis.call('XACK', KEYS[1], ARGV[1], ARGV[i]) == 1 then acked[#acked + 1] = ARGV[i] end
end
return acked
`,
  1,
);
