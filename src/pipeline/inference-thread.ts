/**
 * The inference thread: owns the segmented backbone and the online cache.
 * onnxruntime's `run()` blocks the thread that calls it, so it runs here and
 * the main thread stays free for Kafka (fetches, heartbeats, commits).
 *
 * Batches are served one at a time in arrival order; after each one the
 * result is posted first, then the cache learns from it (`maintain()`), so
 * learning never delays an answer and never overlaps a batch. A result also
 * carries the shadow audit of the exits it changed (for metrics).
 *
 * With sharing (cache-sharing.ts) the cache belongs to the fleet: a newer
 * shared snapshot is adopted before a batch, the trainer lease decides after
 * it whether this replica trains, and the same step also runs while no
 * batches come, so that a trainer without frames of its own still trains on
 * the fleet's and a follower still takes up the lease. Changes in how the
 * replica takes part are posted to the main thread (metrics).
 */
import { parentPort, workerData } from "node:worker_threads";
import type { MessagePort } from "node:worker_threads";
import type { FrameOutcome } from "../cache/engine.ts";
import { OnlineCache } from "../cache/online-cache.ts";
import type { CacheSnapshot } from "../cache/state.ts";
import { SegmentedBackbone } from "../model/backbone.ts";
import { Preprocessor } from "../model/preprocess.ts";
import { componentLogger, createLogger } from "../telemetry/logger.ts";
import type { Logger } from "../telemetry/logger.ts";
import type {
  ExitAudit,
  FromInference,
  InferenceInit,
  ModelInfo,
  OutcomeColumns,
  ToInference,
} from "./inference-protocol.ts";
import { outcomeBuffers, toWireError } from "./inference-protocol.ts";
import { CacheSharing } from "./cache-sharing.ts";
import { LearnerClient } from "./learner-client.ts";
import { LearnerFeed } from "./learner-feed.ts";
import { osThreadId } from "./thread-priority.ts";

/** How often a thread with no batches runs the sharing step (adopt, lease, train). */
const IDLE_STEP_MS = 250;

/**
 * Under overload (SLO mode answering every frame of a batch below strict,
 * docs/slo.md) learning yields to answering: it runs after one batch in this
 * many, and the training steps of the batches in between are dropped, not
 * paid back later in a burst. Only those batches hold out frames for
 * calibration, too (each would run the whole backbone).
 */
const LEARN_EVERY_UNDER_LOAD = 4;

interface Loaded {
  backbone: SegmentedBackbone;
  cache: OnlineCache;
  pre: Preprocessor;
  /** Present when the cache is shared with the fleet. */
  sharing?: CacheSharing;
  /** Present when a learner thread trains for this replica (the inference thread then never does). */
  learner?: LearnerClient;
  /** With a learner thread: what the engine sees, on its way to the learner (learner-feed.ts). */
  feed?: LearnerFeed;
}

function columns(outcomes: readonly FrameOutcome[]): OutcomeColumns {
  const n = outcomes.length;
  const c: OutcomeColumns = {
    label: new Int32Array(n),
    exit: new Int32Array(n),
    confidence: new Float64Array(n),
    macs: new Float64Array(n),
    computeMs: new Float64Array(n),
    headsVersion: new Float64Array(n),
    audited: new Uint8Array(n),
    exactHit: new Uint8Array(n),
  };
  outcomes.forEach((o, i) => {
    c.label[i] = o.label;
    c.exit[i] = o.exit;
    c.confidence[i] = o.confidence;
    c.macs[i] = o.macs;
    c.computeMs[i] = o.computeMs;
    c.headsVersion[i] = o.headsVersion;
    c.audited[i] = o.audited ? 1 : 0;
    c.exactHit[i] = o.exactHit ? 1 : 0;
  });
  return c;
}

async function load(init: InferenceInit, log: Logger): Promise<Loaded> {
  // The engine runs segment by segment; the one-session full model would only cost memory.
  const backbone = await SegmentedBackbone.load(init.modelDir, {
    intraOpThreads: init.intraOpThreads,
    // The whole network as one session is the cache-off path; with the cache
    // on, the engine runs fused spans and never needs it.
    loadFull: !init.cacheEnabled,
  });
  const pre = new Preprocessor(backbone.manifest.input);
  try {
    if (init.sharing && init.cacheEnabled) {
      const feed = init.sharing.learnerThread ? new LearnerFeed() : undefined;
      const sharing = await CacheSharing.start({
        backbone,
        options: init.cache,
        init: init.sharing,
        workerId: init.workerId,
        log,
        part: feed ? "answers" : "all",
        sink: feed,
      });
      // Sessions the first batches would otherwise build on the frame path.
      await sharing.cache.prepare();
      return { backbone, cache: sharing.cache, pre, sharing, feed };
    }
    const cache = await OnlineCache.create(backbone, init.cache, undefined, init.cacheEnabled);
    await cache.prepare();
    return { backbone, cache, pre };
  } catch (err) {
    await backbone.close();
    throw err;
  }
}

function modelInfo({ backbone }: Loaded): ModelInfo {
  const m = backbone.manifest;
  const [channels, height, width] = m.input.shape;
  return {
    modelId: m.modelId,
    classes: [...m.classes],
    input: { channels, height, width },
    fullMacs: m.full.macs,
    exits: m.exits.length,
  };
}

class InferenceServer {
  private readonly queue: ToInference[] = [];
  private busy = false;
  private closing = false;
  private openExits = 0;
  private headsVersion: number;
  /** Heads version whose exits the main thread was last told of (-1: none yet). */
  private exitsSent = -1;
  /** Audits recorded per exit as of the last result (only changed exits are sent). */
  private readonly auditedSent: number[] = [];
  private sharingSent = "";
  /** Drift alarms raised here while learning alone (shared, CacheSharing counts them). */
  private driftAlarms = 0;
  /** Examples the trainer left out while learning alone, as last reported. */
  private examplesRejected = 0;
  /** Batches answered under load since learning last ran. */
  private underLoad = 0;
  private readonly idleTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly port: MessagePort,
    private readonly loaded: Loaded,
    private readonly log: Logger,
    private readonly init: InferenceInit,
  ) {
    this.headsVersion = loaded.cache.engine.version;
    if (loaded.sharing) {
      this.idleTimer = setInterval(() => void this.idleStep(), IDLE_STEP_MS);
      this.idleTimer.unref();
    }
  }

  /** The exits whose audit moved since the last call. */
  private auditChanges(): ExitAudit[] | undefined {
    const { audit } = this.loaded.cache;
    const changed: ExitAudit[] = [];
    audit.totals.forEach((t, exit) => {
      if (t.audited === (this.auditedSent[exit] ?? 0)) return;
      this.auditedSent[exit] = t.audited;
      const window = audit.stats(exit, this.init.cache.confidenceLevel, this.init.cache.boundMethod);
      changed.push({
        exit,
        windowAudited: window.audited,
        windowAgreed: window.agreed,
        audited: t.audited,
        agreed: t.agreed,
      });
    });
    return changed.length > 0 ? changed : undefined;
  }

  enqueue(message: ToInference): void {
    this.queue.push(message);
    void this.pump();
  }

  private post(message: FromInference, transfer: ArrayBuffer[] = []): void {
    this.port.postMessage(message, transfer);
  }

  private async pump(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      for (let m = this.queue.shift(); m; m = this.queue.shift()) {
        if (m.type === "close") return await this.close();
        await this.batch(m.seq, m.ids, new Uint8Array(m.pixels), m.strictness);
      }
    } finally {
      this.busy = false;
    }
  }

  /** The sharing step while no batch comes (a batch runs it after its result). */
  private async idleStep(): Promise<void> {
    if (this.busy || this.closing || this.queue.length > 0) return;
    this.busy = true;
    try {
      await this.learn();
    } finally {
      this.busy = false;
    }
    if (this.queue.length > 0) void this.pump();
  }

  private async batch(
    seq: number,
    ids: string[],
    pixels: Uint8Array,
    strictness: Float32Array | undefined,
  ): Promise<void> {
    const { cache, pre } = this.loaded;
    // Under overload learning and evidence gathering yield to answering,
    // except after one batch in LEARN_EVERY_UNDER_LOAD.
    const overloaded = strictness !== undefined && strictness.every((s) => s < 1);
    const yielding = overloaded && (this.underLoad + 1) % LEARN_EVERY_UNDER_LOAD !== 0;
    this.underLoad = overloaded ? this.underLoad + 1 : 0;
    cache.engine.yielding = yielding;
    let outcomes: FrameOutcome[];
    try {
      await this.loaded.sharing?.adoptLatest();
      this.noteHeads(undefined);
      outcomes = await cache.process(ids, pre.normalise(pixels, ids.length), strictness);
    } catch (err) {
      this.log.error({ err, seq, frames: ids.length }, "batch failed");
      this.post({ type: "failed", seq, error: toWireError(err) });
      return;
    }
    const result = columns(outcomes);
    const audit = this.auditChanges();
    this.post({ type: "result", seq, outcomes: result, ...(audit ? { audit } : {}) }, outcomeBuffers(result));
    if (yielding) {
      cache.forgoLearning();
      return;
    }
    await this.learn();
  }

  /** Learning after a batch (or while idle, when shared): train, publish, adopt, switch roles. */
  private async learn(): Promise<void> {
    const { cache, sharing } = this.loaded;
    try {
      const published = await (sharing ? sharing.maintain() : cache.maintain());
      // Shared, the sharing step logs the trainer's alarms itself.
      if (!sharing) this.reportLearning();
      this.noteHeads(published);
    } catch (err) {
      this.log.error({ err }, "cache maintenance failed");
      this.post({ type: "fatal", error: toWireError(err) });
    }
    if (sharing) {
      const own = sharing.status();
      const merged = this.loaded.learner?.merge(own) ?? own;
      const feedDropped = this.loaded.feed?.dropped ?? 0;
      const status = { ...merged, examplesDropped: merged.examplesDropped + feedDropped };
      const text = JSON.stringify(status);
      if (text !== this.sharingSent) {
        this.sharingSent = text;
        this.post({ type: "sharing", status });
      }
    }
  }

  /** Learning alone: logs a new drift alarm, and reports the totals when one changed. */
  private reportLearning(): void {
    const { cache } = this.loaded;
    const drift = cache.newDriftAlarm();
    if (drift) {
      this.log.warn({ headsVersion: cache.engine.version }, drift);
      this.driftAlarms++;
    }
    const rejected = cache.trainer.stats.rejected;
    if (!drift && rejected === this.examplesRejected) return;
    this.examplesRejected = rejected;
    this.post({ type: "learning", driftAlarms: this.driftAlarms, examplesRejected: rejected });
  }

  /** Logs a change of the heads that answer: published here, or adopted from the fleet. */
  private noteHeads(published: CacheSnapshot | undefined): void {
    const current = this.loaded.cache.engine.current;
    if (current.version !== this.exitsSent) {
      // The heads the thread started with too, after its first batch.
      this.exitsSent = current.version;
      const exits = current.decisions.map(({ exit, open, threshold, reason }) => ({
        exit,
        open,
        threshold,
        reason,
      }));
      this.post({ type: "exits", headsVersion: current.version, exits });
    }
    if (current.version === this.headsVersion) return;
    this.headsVersion = current.version;
    const open = current.decisions.filter((d) => d.open).length;
    // A new version every publishEvery frames is routine; exits opening or closing is news.
    const level = open === this.openExits ? "debug" : "info";
    this.openExits = open;
    const source = published === current ? "published here" : "from the shared state";
    this.log[level]({ headsVersion: current.version, openExits: open, source }, "new cache heads adopted");
  }

  private async close(): Promise<void> {
    this.closing = true;
    this.queue.length = 0;
    clearInterval(this.idleTimer);
    try {
      // The learner gives the lease up while the forwarder sends what it still holds.
      await Promise.all([this.loaded.learner?.close(), this.loaded.sharing?.close()]);
    } catch (err) {
      this.log.warn({ err }, "could not close the shared cache state cleanly");
    }
    await this.loaded.cache.close();
    await this.loaded.backbone.close();
    this.log.info("inference thread closed");
    this.log.flush();
    this.post({ type: "closed" });
    this.port.close();
  }
}

async function main(port: MessagePort, init: InferenceInit): Promise<void> {
  const log = componentLogger(createLogger({ level: init.logLevel, workerId: init.workerId }), "inference");
  let loaded: Loaded;
  try {
    loaded = await load(init, componentLogger(log, "state"));
  } catch (err) {
    log.error({ err }, "model failed to load");
    log.flush();
    port.postMessage({ type: "fatal", error: toWireError(err) } satisfies FromInference);
    port.close();
    return;
  }
  if (loaded.sharing && loaded.feed && init.sharing) {
    const learner = LearnerClient.start(
      {
        modelDir: init.modelDir,
        cache: init.cache,
        logLevel: init.logLevel,
        workerId: init.workerId,
        sharing: init.sharing,
      },
      log,
      (err) => {
        log.error({ err }, "the learner thread failed");
        port.postMessage({ type: "fatal", error: toWireError(err) } satisfies FromInference);
      },
    );
    loaded.learner = learner;
    loaded.feed.attach((entries) => learner.send(entries));
  }
  const server = new InferenceServer(port, loaded, log, init);
  port.on("message", (m: ToInference) => server.enqueue(m));
  const info = modelInfo(loaded);
  // The thread's id names it in `top -H` and /proc (bench:kafka's CPU rows read it).
  log.info({ modelId: info.modelId, cacheEnabled: init.cacheEnabled, tid: osThreadId() }, "model loaded");
  port.postMessage({ type: "ready", model: info } satisfies FromInference);
}

if (!parentPort) throw new Error("inference-thread.ts runs as a worker thread (see inference-client.ts)");
await main(parentPort, workerData as InferenceInit);
