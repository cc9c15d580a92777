/**
 * Where the engine's compute time goes, step by step (`npm run bench`
 * prints it): totals per fused span, per head answering in a call of its
 * own, and for the copying of the frames that stay after an exit.
 */

/** One kind of step the engine takes: onnxruntime calls or passes, frames through them, time. */
export interface StepTotals {
  calls: number;
  frames: number;
  ms: number;
}

/** Where the engine's compute time went since it started. */
export interface EngineProfile {
  /** Per span run, keyed "first-last" (segments), "+head" when the exit's head ran inside it. */
  spans: Map<string, StepTotals>;
  /** Per exit whose head was evaluated in a call of its own. */
  heads: Map<number, StepTotals>;
  /** Copying the staying frames' activations after an exit. */
  compaction: StepTotals;
}

export function emptyProfile(): EngineProfile {
  return { spans: new Map(), heads: new Map(), compaction: { calls: 0, frames: 0, ms: 0 } };
}

export function tally(totals: StepTotals, frames: number, ms: number): void {
  totals.calls++;
  totals.frames += frames;
  totals.ms += ms;
}

export function tallyIn<K>(map: Map<K, StepTotals>, key: K, frames: number, ms: number): void {
  let totals = map.get(key);
  if (!totals) map.set(key, (totals = { calls: 0, frames: 0, ms: 0 }));
  tally(totals, frames, ms);
}
