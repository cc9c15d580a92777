/** The bundled backbone and test split, as tests and benchmarks load them. */
import { join } from "node:path";
export { argmax } from "../../src/cache/head-math.ts";
import { loadIdxDataset } from "../../src/model/idx.ts";
import type { LabelledImages } from "../../src/model/idx.ts";
import type { SegmentedBackbone } from "../../src/model/backbone.ts";
import { Preprocessor } from "../../src/model/preprocess.ts";
import { ROOT } from "../setup/discovery.ts";

export const MODEL_DIR = join(ROOT, "models", "fashion-resnet18");
export const DATA_DIR = join(ROOT, "data", "fashion-mnist");

let cached: Promise<LabelledImages> | undefined;

export function testSplit(): Promise<LabelledImages> {
  cached ??= loadIdxDataset(DATA_DIR, "t10k");
  return cached;
}

/** The first `n` test images as the model's normalised input batch. */
export async function firstTestBatch(model: SegmentedBackbone, n: number): Promise<Float32Array> {
  const pre = new Preprocessor(model.manifest.input);
  return pre.normalise((await testSplit()).images.subarray(0, n * pre.frameSize), n);
}
