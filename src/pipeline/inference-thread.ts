/**
 * The inference thread: owns the segmented backbone and the online cache.
 * onnxruntime's `run()` blocks the thread that calls it, so it runs here and
 * the main thread stays free for Kafka (fetches, heartbeats, commits).
 *
 * Batches are served one at a time in arrival order; after each one the
 * result is posted first, then the cache learns from it (`maintain()`), so
 * learning never delays an answer and never overlaps a batch. A result also
 * carries the shadow audit of the exits it changed (for metrics).
 */
import { parentPort, workerData } from "node:worker_threads";
import type { MessagePort } from "node:worker_threads";
import type { FrameOutcome } from "../cache/engine.ts";
import { OnlineCache } from "../cache/online-cache.ts";
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

interface Loaded {
  backbone: SegmentedBackbone;
  cache: OnlineCache;
  pre: Preprocessor;
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
  };
  outcomes.forEach((o, i) => {
    c.label[i] = o.label;
    c.exit[i] = o.exit;
    c.confidence[i] = o.confidence;
    c.macs[i] = o.macs;
    c.computeMs[i] = o.computeMs;
    c.headsVersion[i] = o.headsVersion;
    c.audited[i] = o.audited ? 1 : 0;
  });
  return c;
}

async function load(init: InferenceInit): Promise<Loaded> {
  // The engine runs segment by segment; the one-session full model would only cost memory.
  const backbone = await SegmentedBackbone.load(init.modelDir, {
    intraOpThreads: init.intraOpThreads,
    // The whole network as one session is the cache-off path; with the cache
    // on, the engine runs fused spans and never needs it.
    loadFull: !init.cacheEnabled,
  });
  const cache = await OnlineCache.create(backbone, init.cache, undefined, init.cacheEnabled);
  return { backbone, cache, pre: new Preprocessor(backbone.manifest.input) };
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
  private openExits = 0;
  /** Audits recorded per exit as of the last result (only changed exits are sent). */
  private readonly auditedSent: number[] = [];

  constructor(
    private readonly port: MessagePort,
    private readonly loaded: Loaded,
    private readonly log: Logger,
    private readonly init: InferenceInit,
  ) {}

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
        await this.batch(m.seq, m.ids, new Uint8Array(m.pixels));
      }
    } finally {
      this.busy = false;
    }
  }

  private async batch(seq: number, ids: string[], pixels: Uint8Array): Promise<void> {
    const { cache, pre } = this.loaded;
    let outcomes: FrameOutcome[];
    try {
      outcomes = await cache.process(ids, pre.normalise(pixels, ids.length));
    } catch (err) {
      this.log.error({ err, seq, frames: ids.length }, "batch failed");
      this.post({ type: "failed", seq, error: toWireError(err) });
      return;
    }
    const result = columns(outcomes);
    const audit = this.auditChanges();
    this.post({ type: "result", seq, outcomes: result, ...(audit ? { audit } : {}) }, outcomeBuffers(result));
    try {
      const adopted = await cache.maintain();
      if (adopted) {
        const open = adopted.decisions.filter((d) => d.open).length;
        // A new version every publishEvery frames is routine; exits opening or closing is news.
        const level = open === this.openExits ? "debug" : "info";
        this.openExits = open;
        this.log[level]({ headsVersion: adopted.version, openExits: open }, "new cache heads adopted");
      }
    } catch (err) {
      this.log.error({ err }, "cache maintenance failed");
      this.post({ type: "fatal", error: toWireError(err) });
    }
  }

  private async close(): Promise<void> {
    this.queue.length = 0;
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
    loaded = await load(init);
  } catch (err) {
    log.error({ err }, "model failed to load");
    log.flush();
    port.postMessage({ type: "fatal", error: toWireError(err) } satisfies FromInference);
    port.close();
    return;
  }
  const server = new InferenceServer(port, loaded, log, init);
  port.on("message", (m: ToInference) => server.enqueue(m));
  const info = modelInfo(loaded);
  log.info({ modelId: info.modelId, cacheEnabled: init.cacheEnabled }, "model loaded");
  port.postMessage({ type: "ready", model: info } satisfies FromInference);
}

if (!parentPort) throw new Error("inference-thread.ts runs as a worker thread (see inference-client.ts)");
await main(parentPort, workerData as InferenceInit);
