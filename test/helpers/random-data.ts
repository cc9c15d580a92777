/** Random training data for head tests, drawn from a seeded generator so runs repeat. */
import { softmaxWithTemperature } from "../../src/cache/heads.ts";
import type { SeededRandom } from "../../src/cache/random.ts";

/** n random distributions over `classes` (softmax of N(0, 2²) logits), row-major. */
export function softTargets(rng: SeededRandom, n: number, classes: number): Float32Array {
  const out = new Float32Array(n * classes);
  const logits = new Float32Array(classes);
  for (let r = 0; r < n; r++) {
    for (let c = 0; c < classes; c++) logits[c] = 2 * rng.gaussian();
    softmaxWithTemperature(logits, 1, out.subarray(r * classes, (r + 1) * classes));
  }
  return out;
}
