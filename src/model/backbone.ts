/**
 * Runs a segmented backbone with onnxruntime: one session per segment (and
 * one for the whole network, the cache-off baseline), any prefix or suffix of
 * segments on a batch, returning the logits and the exit features.
 *
 * onnxruntime-node's `run()` executes on the calling thread; callers that must
 * stay responsive (the Kafka worker) run this class inside a worker thread.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import ort from "onnxruntime-node";
import { LayercacheError } from "../errors/index.ts";
import type { Manifest, SegmentSpec } from "./manifest.ts";
import { ACTIVATION, LOGITS, elements, loadManifest } from "./manifest.ts";
import type { SpanRange } from "./spans.ts";
import { buildSpan, spanFeatureName, spanTailName } from "./spans.ts";

const TAIL_PREFIX = spanTailName("");

export interface RuntimeOptions {
  /** Threads onnxruntime may use inside one operator. */
  intraOpThreads: number;
  /** Also load the whole network as one session (for the cache-off path). Default true. */
  loadFull?: boolean;
  /**
   * Load a session per segment (`runSegment`). Default true; false for a
   * process that only needs the manifest and builds spans, if any, on demand
   * (the learner thread runs no frame at all).
   */
  loadSegments?: boolean;
}

export interface SegmentResult {
  /** Input of the next segment (absent after the last one). */
  activation?: Float32Array;
  /** Pooled features for the exit after this segment, if there is one. */
  features?: Float32Array;
  /** Class logits, after the last segment only. */
  logits?: Float32Array;
}

export interface SpanResult {
  /** Input of the segment after the span (absent if the span ends the network). */
  activation?: Float32Array;
  /** Class logits, if the span ends the network. */
  logits?: Float32Array;
  /** Pooled features of every exit inside the span, by exit index. */
  features: Map<number, Float32Array>;
  /** The outputs of the span's tail, by the tail graph's own names (empty without one). */
  tail: Record<string, Float32Array>;
}

/**
 * Session options for every onnxruntime session the project opens: explicit
 * threads, sequential execution, full graph optimisation, and no spinning.
 * Eight sessions each with a spinning intra-op pool starve each other on two
 * cores: bench/backbone measured chained segments 5-9x slower than the whole
 * model at 2 threads with spinning on.
 */
export function onnxSessionOptions(intraOpThreads: number): ort.InferenceSession.SessionOptions {
  return {
    intraOpNumThreads: intraOpThreads,
    interOpNumThreads: 1,
    executionMode: "sequential",
    graphOptimizationLevel: "all",
    extra: { session: { intra_op: { allow_spinning: "0" } } },
  };
}

export class SegmentedBackbone {
  readonly manifest: Manifest;
  readonly dir: string;
  private readonly sessions: ort.InferenceSession[];
  private readonly full: ort.InferenceSession | undefined;
  /** exitAfter[s] = exit index after segment s, or -1. */
  private readonly exitAfter: number[];
  private readonly sessionOptions: ort.InferenceSession.SessionOptions;
  /** Fused spans, built on first use (see spans.ts), by "first-last". */
  private readonly spans = new Map<string, Promise<ort.InferenceSession>>();
  private spanSources: Promise<{ segments: Uint8Array[]; weights: Uint8Array }> | undefined;

  private constructor(
    dir: string,
    manifest: Manifest,
    sessions: ort.InferenceSession[],
    full: ort.InferenceSession | undefined,
    sessionOptions: ort.InferenceSession.SessionOptions,
  ) {
    this.dir = dir;
    this.manifest = manifest;
    this.sessions = sessions;
    this.full = full;
    this.sessionOptions = sessionOptions;
    this.exitAfter = manifest.segments.map((s) =>
      manifest.exits.findIndex((e) => e.afterSegment === s.index),
    );
  }

  static async load(dir: string, options: RuntimeOptions): Promise<SegmentedBackbone> {
    const manifest = loadManifest(dir);
    const sessionOptions = onnxSessionOptions(options.intraOpThreads);
    const open = async (file: string, spec: Pick<SegmentSpec, "input" | "outputs">) => {
      let session: ort.InferenceSession;
      try {
        session = await ort.InferenceSession.create(join(dir, file), sessionOptions);
      } catch (err) {
        throw new LayercacheError("MODEL_RUNTIME", `${file}: onnxruntime could not load it`, { cause: err });
      }
      checkSession(file, session, spec);
      return session;
    };
    const sessions = [];
    if (options.loadSegments !== false)
      for (const s of manifest.segments) sessions.push(await open(s.file, s));
    const full = options.loadFull === false ? undefined : await open(manifest.full.file, manifest.full);
    return new SegmentedBackbone(dir, manifest, sessions, full, sessionOptions);
  }

  get segmentCount(): number {
    return this.manifest.segments.length;
  }

  get exitCount(): number {
    return this.manifest.exits.length;
  }

  /** The exit index right after segment `segment`, or -1. */
  exitAfterSegment(segment: number): number {
    return this.exitAfter[segment] ?? -1;
  }

  /** Runs one segment on `n` frames; `input` holds n x (segment input shape) floats. */
  async runSegment(segment: number, input: Float32Array, n: number): Promise<SegmentResult> {
    const spec = this.manifest.segments[segment];
    const session = this.sessions[segment];
    if (!spec) throw new LayercacheError("INTERNAL", `no segment ${segment}`);
    if (!session)
      throw new LayercacheError("INTERNAL", `segment ${segment} not loaded (loadSegments: false)`);
    const outputs = await run(session, spec.input.name, spec.input.shape, input, n);
    const exit = this.manifest.exits[this.exitAfterSegment(segment)];
    return {
      activation: outputs[ACTIVATION],
      logits: outputs[LOGITS],
      features: exit ? outputs[exit.feature] : undefined,
    };
  }

  /**
   * Runs segments [from, to) in a row. Returns the last segment's result and
   * the features of every exit passed on the way (by exit index).
   */
  async runSegments(
    from: number,
    to: number,
    input: Float32Array,
    n: number,
  ): Promise<{ result: SegmentResult; features: Map<number, Float32Array> }> {
    const features = new Map<number, Float32Array>();
    let x = input;
    let result: SegmentResult = {};
    for (let s = from; s < to; s++) {
      result = await this.runSegment(s, x, n);
      const exit = this.exitAfterSegment(s);
      if (exit >= 0 && result.features) features.set(exit, result.features);
      if (result.activation) x = result.activation;
    }
    return { result, features };
  }

  /**
   * Builds the sessions of these spans (those not built yet). Building one
   * blocks the thread for tens of milliseconds (14-133 ms for the bundled
   * model's spans), so the engine has it done when it adopts a snapshot,
   * between batches, rather than inside the first batch that needs the span.
   * Resolves when all are built; a span that fails to build fails again, with
   * its error, when a batch runs it.
   */
  async prepareSpans(ranges: readonly SpanRange[]): Promise<void> {
    await Promise.all(ranges.map((r) => this.spanSession(r).catch(() => undefined)));
  }

  /**
   * Runs segments [first, last] as one fused session (see spans.ts). A range
   * with a tail takes the tail's inputs in `tailFeeds`, by the tail graph's
   * own names, and returns its outputs in `tail`.
   */
  async runSpan(
    range: SpanRange,
    input: Float32Array,
    n: number,
    tailFeeds: Record<string, ort.Tensor> = {},
  ): Promise<SpanResult> {
    const session = await this.spanSession(range);
    const spec = this.manifest.segments[range.first]!;
    const extra: Record<string, ort.Tensor> = {};
    for (const [name, tensor] of Object.entries(tailFeeds)) extra[spanTailName(name)] = tensor;
    const outputs = await run(session, spec.input.name, spec.input.shape, input, n, extra);
    const features = new Map<number, Float32Array>();
    this.manifest.exits.forEach((e, exit) => {
      if (e.afterSegment >= range.first && e.afterSegment <= range.last) {
        features.set(exit, outputs[spanFeatureName(exit)]!);
      }
    });
    const tail: Record<string, Float32Array> = {};
    for (const [name, data] of Object.entries(outputs)) {
      if (name.startsWith(TAIL_PREFIX)) tail[name.slice(TAIL_PREFIX.length)] = data;
    }
    return { activation: outputs[ACTIVATION], logits: outputs[LOGITS], features, tail };
  }

  private spanSession(range: SpanRange): Promise<ort.InferenceSession> {
    const key = `${range.first}-${range.last}${range.tail ? `+${range.tail.key}` : ""}`;
    let session = this.spans.get(key);
    if (!session) {
      session = this.createSpan(range);
      this.spans.set(key, session);
    }
    return session;
  }

  private async createSpan(range: SpanRange): Promise<ort.InferenceSession> {
    this.spanSources ??= (async () => ({
      segments: await Promise.all(this.manifest.segments.map((s) => readFile(join(this.dir, s.file)))),
      weights: this.manifest.weights
        ? await readFile(join(this.dir, this.manifest.weights))
        : new Uint8Array(0),
    }))();
    const { segments, weights } = await this.spanSources;
    const bytes = buildSpan(this.manifest, segments, weights, range);
    try {
      return await ort.InferenceSession.create(bytes, this.sessionOptions);
    } catch (err) {
      throw new LayercacheError(
        "MODEL_RUNTIME",
        `segments ${range.first}-${range.last}: onnxruntime could not load the fused span`,
        { cause: err },
      );
    }
  }

  /** The whole network in one session: the cache-off baseline. */
  async runFull(input: Float32Array, n: number): Promise<Float32Array> {
    if (!this.full) throw new LayercacheError("INTERNAL", "full model not loaded (loadFull: false)");
    const spec = this.manifest.full;
    const out = await run(this.full, spec.input.name, spec.input.shape, input, n);
    return out[spec.outputs[0]!.name]!;
  }

  async close(): Promise<void> {
    const spans = await Promise.allSettled(this.spans.values());
    const built = spans.flatMap((s) => (s.status === "fulfilled" ? [s.value] : []));
    this.spans.clear();
    await Promise.all(
      [...this.sessions, ...(this.full ? [this.full] : []), ...built].map((s) => s.release()),
    );
  }
}

async function run(
  session: ort.InferenceSession,
  inputName: string,
  shape: readonly number[],
  input: Float32Array,
  n: number,
  extraFeeds: Record<string, ort.Tensor> = {},
): Promise<Record<string, Float32Array>> {
  if (input.length !== n * elements(shape)) {
    throw new LayercacheError("INTERNAL", `input has ${input.length} floats, expected ${n} x [${shape}]`);
  }
  const feeds = { ...extraFeeds, [inputName]: new ort.Tensor("float32", input, [n, ...shape]) };
  let out: ort.InferenceSession.OnnxValueMapType;
  try {
    out = await session.run(feeds);
  } catch (err) {
    throw new LayercacheError("MODEL_RUNTIME", `onnxruntime run failed`, { cause: err, retriable: false });
  }
  const result: Record<string, Float32Array> = {};
  for (const [name, value] of Object.entries(out)) result[name] = value.data as Float32Array;
  return result;
}

/** The session's declared inputs and outputs must be the manifest's (batch axis free). */
function checkSession(
  file: string,
  session: ort.InferenceSession,
  spec: Pick<SegmentSpec, "input" | "outputs">,
): void {
  const fail = (why: string) => new LayercacheError("MANIFEST_INVALID", `${file}: ${why}`);
  if (session.inputNames.length !== 1 || session.inputNames[0] !== spec.input.name) {
    throw fail(`inputs are [${session.inputNames}], manifest says '${spec.input.name}'`);
  }
  const missing = spec.outputs.map((o) => o.name).filter((n) => !session.outputNames.includes(n));
  if (missing.length > 0) throw fail(`outputs [${session.outputNames}] lack [${missing}]`);
  const meta = session.inputMetadata[0];
  if (meta && meta.isTensor) {
    const dims = meta.shape.slice(1);
    const clash = dims.some((d, i) => typeof d === "number" && d !== spec.input.shape[i]);
    if (clash || dims.length !== spec.input.shape.length) {
      throw fail(`input shape [${meta.shape}] does not match the manifest's [batch,${spec.input.shape}]`);
    }
  }
}
