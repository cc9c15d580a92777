/**
 * The exact cache: for streams that repeat frames (a still scene, a replayed
 * source, a producer that sends again), the answer given for a frame's exact
 * model input is kept under a hash of that input, and a repeat is answered
 * from it without running the model: 0 MACs, and the lookup as its compute
 * time. It sits in front of the early-exit engine (`OnlineCache.process`);
 * only misses reach the engine.
 *
 * **Key.** SHA-256 (node:crypto) of the frame's model input: the normalised
 * float32 tensor the engine would run, so frames that decode to the same
 * input (the same pixels as RAW8 or PNG, say) share an entry. For a 28x28
 * frame (3,136 bytes) the digest costs 2.9-3.0 µs on a CPU with SHA
 * extensions (SHA-1 the same, MD5 and SHA-512 5.3 µs); with the lookup, 3-5
 * µs a frame, hit or miss. A whole hit in `OnlineCache.process` took 3.5 µs
 * a frame at batch 32 and 6 µs at batch 1, where running the backbone took
 * 1.8-2.3 ms. A collision would answer one frame with another's label; with
 * SHA-256 that takes more than anyone can compute.
 *
 * **Bound.** At most `maxEntries` answers, least recently used evicted first
 * (lru-cache: 0.17 µs an insert that evicts; a Map re-inserted to keep
 * recency took 5.9 µs, its iterator skipping the holes of deleted entries).
 * About 200 bytes an entry (key, answer, list links), so 10,000 entries take
 * 2 MB.
 *
 * **What is stored, and when it may answer.** Every answer the engine gives:
 *
 * - Backbone answers (`exit` -1), held-out and audited frames included (they
 *   are answered by the backbone too): the backbone is a fixed function of
 *   the input, so a repeat gets exactly the label it would get by running it
 *   again. They answer for as long as they stay in the cache.
 * - Early-exit answers, but only while the heads version that gave them is
 *   the engine's current one. That head was opened at a threshold proven to
 *   agree with the backbone at the target, and the same head at the same
 *   threshold gives the same input the same answer: a repeat gets what it
 *   would have had, so the agreement guarantee is the one the engine gives.
 *   Under a newer version the exit may have moved or closed (a drift alarm
 *   closes every exit), so the entry is dropped and the frame runs again. In
 *   SLO mode a frame is held to its own strictness: an early answer answers a
 *   repeat only if its confidence clears the threshold the repeat is held to
 *   at that exit (`OnlineCache.mayAnswer`); a stricter repeat runs again.
 *
 * **Calibration and audit are not biased.** The engine draws its held-out
 * (calibration) and audited frames from the frames it runs, which are the
 * misses; a hit never reaches it, so it is never held out, audited or
 * trained on, and the engine never sees a frame's repeats. The held-out
 * frames are therefore a uniform sample of the frames the heads answer anew,
 * which is the population the thresholds must hold for, and the calibration
 * set holds no repeats of one frame (repeats are not independent draws). What
 * the guarantee does not cover is weighting by repeats: it is agreement over
 * the answers the heads give, and an early answer is replayed to its repeats
 * within one heads version, as the same head would answer them. A hit is
 * reported with its first answer's label, confidence, exit and heads
 * version, `audited` false and `exactHit` true.
 */
import { createHash } from "node:crypto";
import { LRUCache } from "lru-cache";
import { LayercacheError } from "../errors/index.ts";
import { BACKBONE_EXIT } from "./engine.ts";

/** The answer given for a frame the first time, as kept for its repeats. */
export interface ExactAnswer {
  label: number;
  confidence: number;
  /** Exit that answered, or BACKBONE_EXIT. */
  exit: number;
  /** Heads version the engine used for that answer. */
  headsVersion: number;
}

/** The cache key of one frame's model input: SHA-256 of its bytes, base64. */
export function contentKey(input: Float32Array): string {
  return createHash("sha256")
    .update(new Uint8Array(input.buffer, input.byteOffset, input.byteLength))
    .digest("base64");
}

export class ExactCache {
  private readonly lru: LRUCache<string, ExactAnswer>;

  constructor(readonly maxEntries: number) {
    if (!Number.isInteger(maxEntries) || maxEntries < 1) {
      throw new LayercacheError("INTERNAL", `exact cache of ${maxEntries} entries`);
    }
    this.lru = new LRUCache({ max: maxEntries });
  }

  /** Answers held now. */
  get size(): number {
    return this.lru.size;
  }

  /**
   * The answer stored under `key` if it may answer while `headsVersion` is
   * the engine's (see the module comment); marks it most recently used. An
   * early-exit answer from another version is dropped.
   */
  lookup(key: string, headsVersion: number): ExactAnswer | undefined {
    const answer = this.lru.get(key);
    if (answer === undefined) return undefined;
    if (answer.exit !== BACKBONE_EXIT && answer.headsVersion !== headsVersion) {
      this.lru.delete(key);
      return undefined;
    }
    return answer;
  }

  /** Keeps `answer` for `key`, evicting the least recently used entry when full. */
  store(key: string, answer: ExactAnswer): void {
    this.lru.set(key, answer);
  }

  /** Whether `key` is held, without touching its recency or checking its version. */
  has(key: string): boolean {
    return this.lru.has(key);
  }
}
