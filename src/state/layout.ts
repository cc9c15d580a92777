/**
 * What shared state must fit to be usable by a replica: one feature size per
 * exit and the number of classes, taken from the model manifest. Snapshots
 * and training examples that do not fit are rejected as STATE_INVALID rather
 * than handed to the engine or the trainer.
 */
import type { Manifest } from "../model/manifest.ts";

export interface StateLayout {
  /** Pooled feature size at each exit point. */
  readonly featureSizes: readonly number[];
  readonly classes: number;
}

export function layoutOf(manifest: Pick<Manifest, "exits" | "classes">): StateLayout {
  return { featureSizes: manifest.exits.map((e) => e.size), classes: manifest.classes.length };
}
