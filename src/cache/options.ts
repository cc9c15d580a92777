/**
 * Tunables of the online layer cache, with the defaults the benchmark chose
 * (bench/cache). Validated once; everything else takes them as given.
 */
import { z } from "zod";
import { DEFAULT_MEMORY_PER_CLASS, DEFAULT_NEIGHBOURS, HEAD_KINDS } from "./head-types.ts";

export const cacheOptionsSchema = z.strictObject({
  /** Share of early answers that must equal the backbone's answer. */
  targetAgreement: z.number().min(0.5).max(0.9999).default(0.99),
  /** Confidence level of the one-sided lower bound that proves it. */
  confidenceLevel: z.number().min(0.5).max(0.9999).default(0.95),
  boundMethod: z.enum(["wilson", "clopper-pearson"]).default("clopper-pearson"),
  /**
   * Calibration's scan of thresholds starts at the strictest one that takes
   * up to this share of the held-out frames reaching the exit (calibration.ts),
   * so that with thousands of them one disagreement among the 299 most
   * confident does not close the exit. Below about 1,900 held-out frames it
   * starts at the first as before. 0 always starts at the first.
   */
  scanStartShare: z.number().min(0).max(1).default(0.25),
  /**
   * SLO mode's agreement floor (docs/slo.md): every exit also gets the
   * threshold proven for it, so that an overloaded worker can exit earlier
   * without ever answering below it. At or above the target: no floor.
   */
  floorAgreement: z.number().min(0.5).max(0.9999).default(0.97),
  /** Share of early-exited frames also run through the whole backbone. */
  auditRate: z.number().min(0).max(1).default(0.02),
  /**
   * Head kind at every exit: softmax regression, an MLP, a nearest-neighbour
   * memory (knn), or an MLP and a memory answering together (mlp+knn);
   * docs/cache.md compares them.
   */
  headKind: z.enum(HEAD_KINDS).default("mlp"),
  /** Hidden units of the MLP head. */
  mlpHidden: z.number().int().min(4).max(1024).default(64),
  /**
   * Newest examples a nearest-neighbour memory keeps per class (knn and
   * mlp+knn): it holds at most classes × knnPerClass pooled feature vectors
   * per exit, and a prediction costs that many dot products.
   */
  knnPerClass: z.number().int().min(1).max(4096).default(DEFAULT_MEMORY_PER_CLASS),
  /** Nearest remembered examples that vote on a frame's class (knn and mlp+knn). */
  knnK: z.number().int().min(1).max(256).default(DEFAULT_NEIGHBOURS),
  /** Temperature applied to the backbone's logits to make the heads' soft targets. */
  temperature: z.number().min(0.1).max(20).default(1),
  /** Training examples kept (newest win: a sliding window, so drift washes out). */
  replayCapacity: z.number().int().min(64).max(100_000).default(4096),
  /**
   * A frame that leaves through an open exit also trains the heads before it,
   * towards the answering head's output (its agreement with the backbone is
   * proven), so early heads learn from the whole stream, not only from the
   * frames that reach the end.
   */
  teachEarlierExits: z.boolean().default(true),
  /**
   * Decay of the moving average of each head's parameters that the trainer
   * publishes (averaging.ts); the head itself keeps training on its live
   * parameters. 0 publishes the live parameters. Over seeds 1-3 of
   * `npm run bench`, 0.99 saved more MACs than no averaging (docs/cache.md).
   */
  parameterAveraging: z.number().min(0).max(0.9999).default(0.99),
  /** Mini-batch size of a head update. */
  trainBatch: z.number().int().min(1).max(4096).default(64),
  /** Mini-batch updates per new training example (off the per-frame path), for the first `trainingWarmupExamples`. */
  stepsPerExample: z.number().min(0).max(8).default(0.5),
  /**
   * After this many examples the heads have learned most of what they will,
   * and each further example gets `steadyStepsPerExample` updates: enough to
   * follow the stream, at a fraction of the cost.
   */
  trainingWarmupExamples: z.number().int().min(0).default(2000),
  steadyStepsPerExample: z.number().min(0).max(8).default(0.1),
  /**
   * Share of incoming frames held out for calibration: they run the whole
   * backbone, answer with its label, and are never trained on. While no exit
   * is open every frame runs the backbone anyway, so the warm-up share is free.
   * Once the evidence is in, 5% held out saved more than 10% over seeds 1-3
   * of `npm run bench` (43.2% against 41.8% of MACs): each is paid for in full.
   */
  calibrationRate: z.number().min(0).max(1).default(0.05),
  warmupCalibrationRate: z.number().min(0).max(1).default(0.5),
  /**
   * Evidence first: the warm-up share also holds while the last calibration
   * had fewer held-out frames than this, open exits or not. One proven exit
   * seldom needs more than a few hundred, but the exits after it only see the
   * frames it leaves, so at the steady share the rest would wait thousands of
   * frames for theirs (docs/cache.md). Also after a drift alarm, which drops
   * the evidence. 0 turns it off.
   */
  warmupCalibrationFrames: z.number().int().min(0).max(100_000).default(1000),
  /** Held-out frames kept for calibration (newest win). */
  calibrationCapacity: z.number().int().min(100).max(100_000).default(5000),
  /**
   * Re-calibrate (and publish a new heads version) after this many frames
   * observed, while the heads train at the warm-up rate; after that every
   * `steadyPublishEvery`. Each calibration scores every held-out frame with
   * every head, and once the heads change slowly most of that work would only
   * repeat the last one's (a drift alarm publishes at once either way).
   */
  publishEvery: z.number().int().min(1).max(100_000).default(200),
  steadyPublishEvery: z.number().int().min(1).max(100_000).default(1000),
  /** Recent audits per exit that the drift check looks at. */
  auditWindow: z.number().int().min(10).max(100_000).default(200),
  /** Significance of the drift alarm: agreement below target at this level closes the exit. */
  driftSignificance: z.number().min(1e-9).max(0.5).default(0.01),
  /**
   * Fixed cost of stopping at an exit, in MACs per frame that reaches it: the
   * extra onnxruntime call and activation hand-over of one more span.
   * `npm run bench:backbone` measures it ("one cut in MACs"): 1-4M at batch
   * 1-32 on one thread.
   */
  exitOverheadMacs: z.number().min(0).default(2_000_000),
  /**
   * Answers kept in the exact cache (exact-cache.ts): a repeat of a frame's
   * exact model input is answered from it without running the model. 0 turns
   * it off; it is off whenever the cache is. 10,000 answers take about 2 MB
   * and cover a repeat within the last 10,000 distinct frames (minutes of a
   * camera at tens of frames per second); a frame that never repeats costs
   * 3-5 µs (hash and lookup) against 1-2 ms of model time.
   */
  exactCacheEntries: z.number().int().min(0).max(1_000_000).default(10_000),
  /** Seed of every random choice (sampling, initialisation): runs repeat. */
  seed: z.number().int().default(1),
});

export type CacheOptions = z.output<typeof cacheOptionsSchema>;
export type CacheOptionsInput = z.input<typeof cacheOptionsSchema>;

export function cacheOptions(input: CacheOptionsInput = {}): CacheOptions {
  return cacheOptionsSchema.parse(input);
}
