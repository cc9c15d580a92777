/**
 * The shared state of the cache: a numbered version of the heads and the
 * exit decisions made for them. Versions only go up. The engine reads the
 * latest snapshot; the trainer publishes new ones through a store (in memory
 * here; Redis for a fleet of replicas).
 */
import type { ExitHead } from "./heads.ts";
import type { ExitDecision } from "./planner.ts";

export interface CacheSnapshot {
  modelId: string;
  version: number;
  /** One head per exit point (null before the first is trained). */
  heads: readonly (ExitHead | null)[];
  decisions: readonly ExitDecision[];
}

export interface CacheStateStore {
  current(): Promise<CacheSnapshot | undefined>;
  /** Accepts the snapshot only if its version is above the current one. */
  publish(snapshot: CacheSnapshot): Promise<boolean>;
}

export class MemoryStateStore implements CacheStateStore {
  private snapshot: CacheSnapshot | undefined;

  async current(): Promise<CacheSnapshot | undefined> {
    return this.snapshot;
  }

  async publish(snapshot: CacheSnapshot): Promise<boolean> {
    if (this.snapshot && snapshot.version <= this.snapshot.version) return false;
    this.snapshot = snapshot;
    return true;
  }
}

export function emptySnapshot(modelId: string, exits: number): CacheSnapshot {
  return {
    modelId,
    version: 0,
    heads: new Array<ExitHead | null>(exits).fill(null),
    decisions: Array.from({ length: exits }, (_, exit) => ({
      exit,
      open: false,
      threshold: null,
      reason: "warming up: no head trained yet",
      coverage: 0,
      savedMacs: 0,
      costMacs: 0,
      calibration: null,
    })),
  };
}
