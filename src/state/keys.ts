/**
 * Names of everything layercache keeps in Redis for one model, under the
 * configured prefix. The model id sits in a hash tag (`{...}`) so that all
 * keys of a model land in one Redis Cluster slot and every Lua script touches
 * a single slot; two models never share a key, a channel or a lease.
 *
 *   <prefix>:{<modelId>}:snapshot      hash: version, meta (JSON), head:<exit> (bytes)
 *   <prefix>:{<modelId>}:lease         string "<token> <holder>", with a PX expiry
 *   <prefix>:{<modelId>}:lease:token   counter behind the fencing tokens (INCR)
 *   <prefix>:{<modelId>}:examples      stream of training examples (capped)
 *   <prefix>:{<modelId>}:evidence      stream of the trainer's held-out frames (capped; evidence.ts)
 *   <prefix>:{<modelId>}:announce      pub/sub channel: the version just published
 */
import { z } from "zod";
import { LayercacheError } from "../errors/index.ts";

/** Same rule as LAYERCACHE_REDIS_PREFIX in the configuration. */
const prefixSchema = z.string().regex(/^[A-Za-z0-9._:-]{1,64}$/, "letters, digits and . _ : - only");
/** Same rule as the manifest's modelId. */
const modelIdSchema = z.string().regex(/^[A-Za-z0-9._-]{1,128}$/, "letters, digits and . _ - only");

export interface StateKeys {
  readonly prefix: string;
  readonly modelId: string;
  readonly snapshot: string;
  readonly lease: string;
  readonly leaseToken: string;
  readonly examples: string;
  readonly evidence: string;
  readonly announce: string;
}

/** The keys of one model; throws CONFIG_INVALID for a prefix or model id that could break them. */
export function stateKeys(prefix: string, modelId: string): StateKeys {
  for (const [what, schema, value] of [
    ["Redis key prefix", prefixSchema, prefix],
    ["model id", modelIdSchema, modelId],
  ] as const) {
    const parsed = schema.safeParse(value);
    if (!parsed.success) {
      throw new LayercacheError(
        "CONFIG_INVALID",
        `${what} ${JSON.stringify(value)}: ${parsed.error.issues[0]!.message}`,
      );
    }
  }
  const base = `${prefix}:{${modelId}}`;
  return {
    prefix,
    modelId,
    snapshot: `${base}:snapshot`,
    lease: `${base}:lease`,
    leaseToken: `${base}:lease:token`,
    examples: `${base}:examples`,
    evidence: `${base}:evidence`,
    announce: `${base}:announce`,
  };
}
