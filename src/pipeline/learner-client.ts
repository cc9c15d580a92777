/**
 * The inference thread's handle on its learner thread (learner-thread.ts):
 * start it, keep its latest status, close it. The learner failing does not
 * stop the answering: the inference thread hears of it (`onFailure`) and
 * reports it as fatal, like a failure of its own learning.
 */
import type { Worker } from "node:worker_threads";
import type { CacheOptions } from "../cache/options.ts";
import { LayercacheError } from "../errors/index.ts";
import type { Logger } from "../telemetry/logger.ts";
import type { SharingInit, SharingStatus, WireError } from "./inference-protocol.ts";
import { fromWireError } from "./inference-protocol.ts";
import type { LocalEntry } from "./learner-feed.ts";
import { closeWithin, startTsWorker } from "./ts-worker.ts";

const THREAD_ENTRY = new URL("./learner-thread.ts", import.meta.url);
/** How long `close()` lets the thread give the lease up and disconnect before terminating it. */
const CLOSE_GRACE_MS = 10_000;

/** `workerData` of the learner thread. */
export interface LearnerInit {
  modelDir: string;
  cache: CacheOptions;
  logLevel: string;
  workerId: string;
  sharing: SharingInit;
}

/** The fields of the replica's SharingStatus that the learner reports. */
export const LEARNER_FIELDS = [
  "training",
  "examplesForwarded",
  "examplesDropped",
  "holdingBack",
  "published",
  "examplesReceived",
  "auditsReceived",
  "driftAlarms",
  "examplesInvalid",
  "examplesRejected",
  "snapshotVersion",
] as const satisfies readonly (keyof SharingStatus)[];

/** The learner's part of the replica's SharingStatus. */
export type LearnerStatus = Pick<SharingStatus, (typeof LEARNER_FIELDS)[number]>;

/** The learner's part of a full status. */
export function learnerStatus(s: SharingStatus): LearnerStatus {
  return Object.fromEntries(LEARNER_FIELDS.map((k) => [k, s[k]])) as LearnerStatus;
}

export type ToLearner =
  | { type: "close" }
  /** What the inference thread's engine saw (learner-feed.ts). */
  | { type: "examples"; entries: LocalEntry[] };

export type FromLearner =
  | { type: "ready" }
  | { type: "status"; status: LearnerStatus }
  /** The learner cannot go on (failed to start, or learning failed). */
  | { type: "fatal"; error: WireError }
  | { type: "closed" };

export class LearnerClient {
  /** As last reported; undefined until the learner reports. */
  status: LearnerStatus | undefined;
  private exited = false;
  private readonly exit: Promise<void>;

  private constructor(
    private readonly worker: Worker,
    private readonly log: Logger,
    private readonly onFailure: (err: LayercacheError) => void,
  ) {
    worker.on("message", (m: FromLearner) => this.receive(m));
    worker.on("error", (err) =>
      this.onFailure(new LayercacheError("INTERNAL", "learner thread crashed", { cause: err })),
    );
    this.exit = new Promise((resolve) =>
      worker.once("exit", () => {
        this.exited = true;
        resolve();
      }),
    );
  }

  /** Starts the thread; it connects and campaigns for the lease on its own from then on. */
  static start(init: LearnerInit, log: Logger, onFailure: (err: LayercacheError) => void): LearnerClient {
    const worker = startTsWorker(THREAD_ENTRY, { workerData: init, name: "layercache-learner" });
    return new LearnerClient(worker, log, onFailure);
  }

  /** The learner's figures over the inference thread's own (it forwards and adopts; the learner trains and publishes). */
  merge(own: SharingStatus): SharingStatus {
    const l = this.status;
    if (!l) return own;
    return { ...own, ...l, snapshotVersion: Math.max(own.snapshotVersion, l.snapshotVersion) };
  }

  /** Hands the learner what the engine saw (a copy goes over the port). */
  send(entries: LocalEntry[]): void {
    if (!this.exited) this.worker.postMessage({ type: "examples", entries } satisfies ToLearner);
  }

  /** Lets the learner give the lease up and disconnect; terminates it if it hangs. */
  async close(): Promise<void> {
    if (this.exited) return;
    await closeWithin(this.worker, this.exit, { type: "close" } satisfies ToLearner, CLOSE_GRACE_MS, () =>
      this.log.warn("learner thread did not close in time; terminating it"),
    );
  }

  private receive(m: FromLearner): void {
    if (m.type === "status") this.status = m.status;
    else if (m.type === "fatal") this.onFailure(fromWireError(m.error, "learner thread"));
  }
}
