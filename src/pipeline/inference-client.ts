/**
 * The main thread's handle on the inference thread: start it, send it
 * batches (pixel buffers are transferred, so the caller gives them up), get
 * outcomes back, close it. A thread that dies fails every pending batch and
 * every later one with MODEL_RUNTIME.
 */
import type { Worker } from "node:worker_threads";
import { LayercacheError } from "../errors/index.ts";
import type { Logger } from "../telemetry/logger.ts";
import type {
  ExitAudit,
  ExitState,
  FromInference,
  InferenceInit,
  ModelInfo,
  OutcomeColumns,
  SharingStatus,
  ToInference,
} from "./inference-protocol.ts";
import { fromWireError } from "./inference-protocol.ts";
import { closeWithin, startTsWorker } from "./ts-worker.ts";

const THREAD_ENTRY = new URL("./inference-thread.ts", import.meta.url);
/** How long `close()` lets the thread release its sessions before terminating it. */
const CLOSE_GRACE_MS = 10_000;

interface Pending {
  resolve: (o: OutcomeColumns) => void;
  reject: (err: Error) => void;
}

export class InferenceClient {
  /** The latest shadow audit of each exit that has been audited, by exit. */
  readonly audit = new Map<number, ExitAudit>();
  /** How the thread takes part in sharing the cache, as last reported; undefined when it does not. */
  sharing: SharingStatus | undefined;
  /** Drift alarms of a thread that learns alone, as last reported (sharing, `sharing.driftAlarms` counts them). */
  driftAlarms = 0;
  /** Examples its trainer left out, likewise (sharing, `sharing.examplesRejected`). */
  examplesRejected = 0;
  /** The exits of the heads that answer, as last reported (empty until the first heads). */
  exits: readonly ExitState[] = [];
  private readonly pending = new Map<number, Pending>();
  private seq = 0;
  private failure: LayercacheError | undefined;
  private exited = false;
  private readonly exit: Promise<void>;

  private constructor(
    private readonly worker: Worker,
    readonly model: ModelInfo,
    private readonly log: Logger,
    private readonly onFailure: (err: LayercacheError) => void,
  ) {
    worker.on("message", (m: FromInference) => this.receive(m));
    worker.on("error", (err) => this.fail(threadCrashed(err)));
    this.exit = new Promise((resolve) =>
      worker.once("exit", (code) => {
        this.exited = true;
        this.fail(threadExited(code));
        resolve();
      }),
    );
  }

  /** Starts the thread and waits until the model is loaded. `onFailure` hears of a thread that dies later. */
  static async start(
    init: InferenceInit,
    log: Logger,
    onFailure: (err: LayercacheError) => void,
  ): Promise<InferenceClient> {
    const worker = startTsWorker(THREAD_ENTRY, { workerData: init, name: "layercache-inference" });
    let onError!: (err: Error) => void;
    let onExit!: (code: number) => void;
    let onMessage!: (m: FromInference) => void;
    const model = await new Promise<ModelInfo>((resolve, reject) => {
      onError = (err) => reject(threadCrashed(err));
      onExit = (code) => reject(threadExited(code));
      onMessage = (m) => {
        if (m.type === "ready") resolve(m.model);
        else if (m.type === "fatal") reject(fromWireError(m.error, "inference thread"));
        else reject(new LayercacheError("INTERNAL", `inference thread said ${m.type} before ready`));
      };
      worker.once("error", onError).once("exit", onExit).once("message", onMessage);
    }).catch(async (err: unknown) => {
      await worker.terminate();
      throw err;
    });
    // Only ours (not removeAllListeners): Node's own listeners on a Worker keep its message port working.
    worker.off("error", onError).off("exit", onExit).off("message", onMessage);
    return new InferenceClient(worker, model, log, onFailure);
  }

  /** The thread is up and has not failed, exited or been closed. */
  get alive(): boolean {
    return this.failure === undefined && !this.exited;
  }

  /**
   * Runs one batch; `pixels` (ids.length x C x H x W, planar) is transferred
   * to the thread; `strictness` (one per frame, SLO mode) is copied.
   */
  run(ids: string[], pixels: Uint8Array, strictness?: Float32Array): Promise<OutcomeColumns> {
    if (this.failure) return Promise.reject(this.failure);
    const { buffer } = pixels;
    if (
      pixels.byteOffset !== 0 ||
      pixels.byteLength !== buffer.byteLength ||
      !(buffer instanceof ArrayBuffer)
    ) {
      // Transferring a view's buffer would take memory the caller still uses.
      return Promise.reject(new LayercacheError("INTERNAL", "batch pixels must own their whole ArrayBuffer"));
    }
    const seq = ++this.seq;
    return new Promise((resolve, reject) => {
      this.pending.set(seq, { resolve, reject });
      const message: ToInference = {
        type: "batch",
        seq,
        ids,
        pixels: buffer,
        ...(strictness ? { strictness } : {}),
      };
      this.worker.postMessage(message, [buffer]);
    });
  }

  /** Lets the thread finish the batches it has, release its sessions and exit; terminates it if it hangs. */
  async close(): Promise<void> {
    if (this.exited) return;
    await closeWithin(this.worker, this.exit, { type: "close" } satisfies ToInference, CLOSE_GRACE_MS, () =>
      this.log.warn("inference thread did not close in time; terminating it"),
    );
  }

  private receive(m: FromInference): void {
    if (m.type === "result" || m.type === "failed") {
      const p = this.pending.get(m.seq);
      this.pending.delete(m.seq);
      if (m.type === "result") for (const a of m.audit ?? []) this.audit.set(a.exit, a);
      if (!p) return;
      if (m.type === "result") p.resolve(m.outcomes);
      else p.reject(fromWireError(m.error, "inference"));
    } else if (m.type === "sharing") {
      this.sharing = m.status;
    } else if (m.type === "exits") {
      this.exits = m.exits;
    } else if (m.type === "learning") {
      this.driftAlarms = m.driftAlarms;
      this.examplesRejected = m.examplesRejected;
    } else if (m.type === "fatal") {
      this.fail(fromWireError(m.error, "inference thread"));
    } else if (m.type === "closed") {
      this.failure ??= new LayercacheError("SHUTTING_DOWN", "inference thread closed");
    }
  }

  private fail(err: LayercacheError): void {
    const first = this.failure === undefined;
    this.failure ??= err;
    for (const p of this.pending.values()) p.reject(this.failure);
    this.pending.clear();
    if (first && this.failure.code !== "SHUTTING_DOWN") this.onFailure(this.failure);
  }
}

const threadCrashed = (err: Error) =>
  new LayercacheError("MODEL_RUNTIME", "inference thread crashed", { cause: err });
const threadExited = (code: number) =>
  new LayercacheError("MODEL_RUNTIME", `inference thread exited (code ${code})`);
