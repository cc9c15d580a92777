/**
 * The worker's Prometheus metrics, all named `layercache_*`, in a registry of
 * its own (tests run several workers in one process). Counters and
 * histograms are fed as frames go through the stage (`StageObserver`); gauges
 * of state held elsewhere (in-flight frames, paused partitions, consumer lag,
 * the shadow audit, sharing the cache) are read when scraped. Latencies are
 * in seconds, from the fields every Prediction carries.
 */
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import type { Prediction } from "../codec/prediction.ts";
import type { Config } from "../config/index.ts";
import type { TransactionResult } from "../transport/kafka/transactions.ts";
import type { ControlAction, ControlStep } from "../slo/controller.ts";
import type { StageObserver } from "./frame-stage.ts";
import type { ExitAudit, ExitState, ModelInfo, OutcomeColumns, SharingStatus } from "./inference-protocol.ts";

/** What the gauges read at scrape time; each returns nothing useful until the worker has it. */
export interface GaugeSources {
  inFlight(): number;
  pausedPartitions(): number;
  /** Per assigned partition of the frames topic. */
  lag(): ReadonlyMap<number, number>;
  audit(): Iterable<ExitAudit>;
  /** The exits of the heads that answer now. */
  exits?(): Iterable<ExitState>;
  model(): ModelInfo | undefined;
  /** Sharing the cache through Redis, as last reported; undefined when the replica does not share. */
  sharing?(): SharingStatus | undefined;
  /** SLO mode's strictness now (1 strict, 0 at the floor). */
  slo?(): number;
  /** Drift alarms the shadow audit raised where this replica trains (alone, or holding the lease). */
  driftAlarms?(): number;
  /** Examples the trainer left out where this replica trains (cache/trainer.ts). */
  examplesRejected?(): number;
}

/** The sharing totals exported as counters, with their metric names and help. */
const SHARING_TOTALS: [keyof SharingStatus, string, string][] = [
  [
    "examplesForwarded",
    "examples_forwarded_total",
    "Training examples and audit verdicts sent to the trainer through Redis (a replica without the trainer lease).",
  ],
  [
    "examplesDropped",
    "examples_dropped_total",
    "Training examples lost: the buffer overflowed while Redis was unreachable, or a send failed.",
  ],
  ["examplesReceived", "examples_received_total", "Examples from other replicas trained on here."],
  [
    "auditsReceived",
    "fleet_audits_received_total",
    "Other replicas' shadow audits taken into this trainer's drift check.",
  ],
  [
    "examplesInvalid",
    "examples_invalid_total",
    "Entries read from Redis while training (forwarded examples and audits, calibration evidence) that could not be decoded or do not fit the model: skipped and logged.",
  ],
  ["adopted", "snapshots_adopted_total", "Shared cache snapshots adopted from the trainer."],
  ["published", "snapshots_published_total", "Cache snapshots this replica published as the trainer."],
];

/**
 * A counter that follows a total reported elsewhere (the inference thread's),
 * by the difference at each scrape; a total that goes back (a restarted
 * thread) does not take it back.
 */
function followTotal(name: string, help: string, registers: Registry[], read: () => number): void {
  let reported = 0;
  new Counter({
    name: `layercache_${name}`,
    help,
    registers,
    collect() {
      const total = read();
      if (total > reported) this.inc(total - reported);
      reported = Math.max(reported, total);
    },
  });
}

const BACKBONE = "backbone";
const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
const COMPUTE_BUCKETS = [0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25];
const BATCH_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024];

/** `exit` label of an outcome: the exit index, or "backbone" for -1. */
export const exitLabel = (exit: number): string => (exit < 0 ? BACKBONE : String(exit));

export class WorkerMetrics implements StageObserver {
  readonly registry = new Registry();
  private readonly framesConsumed: Counter;
  private readonly predictions: Counter;
  private readonly deadLetters: Counter<"reason">;
  private readonly exitHits: Counter<"exit">;
  private readonly audited: Counter;
  private readonly exactHits: Counter;
  private readonly macsExecuted: Counter;
  private readonly macsSaved: Counter;
  private readonly queueSeconds: Histogram;
  private readonly computeSeconds: Histogram;
  private readonly endToEndSeconds: Histogram;
  private readonly batchFrames: Histogram;
  private readonly headsVersion: Gauge;
  private readonly transactions: Counter<"result">;
  private readonly sloPressure: Gauge;
  private readonly sloSteps: Counter<"action">;
  private labelledExits = false;

  constructor(config: Pick<Config, "workerId" | "delivery">, sources: GaugeSources) {
    const registers = [this.registry];
    const counter = <L extends string = never>(name: string, help: string, labelNames: L[] = []) =>
      new Counter<L>({ name: `layercache_${name}`, help, labelNames, registers });
    const histogram = (name: string, help: string, buckets: number[]) =>
      new Histogram({ name: `layercache_${name}`, help, buckets, registers });

    this.framesConsumed = counter(
      "frames_consumed_total",
      "Messages taken from the frames topic, good or bad.",
    );
    this.predictions = counter("predictions_total", "Predictions delivered (acknowledged, or committed).");
    this.deadLetters = counter("dead_letters_total", "Dead letters delivered, by the codec's reason.", [
      "reason",
    ]);
    this.exitHits = counter(
      "exit_hits_total",
      "Delivered predictions by what answered: exit 0..n-1 or backbone.",
      ["exit"],
    );
    this.audited = counter(
      "audited_frames_total",
      "Frames an exit was confident about, run through the backbone too.",
    );
    this.exactHits = counter(
      "exact_hits_total",
      "Delivered predictions answered from the exact cache (a repeated frame; no model run).",
    );
    this.macsExecuted = counter("macs_executed_total", "Multiply-accumulates run for delivered predictions.");
    this.macsSaved = counter(
      "macs_saved_total",
      "Multiply-accumulates early exits saved against the whole backbone.",
    );
    this.queueSeconds = histogram(
      "queue_seconds",
      "From a frame's producedAt to its consumption.",
      LATENCY_BUCKETS,
    );
    this.computeSeconds = histogram(
      "compute_seconds",
      "Model time per frame (its share of its batch).",
      COMPUTE_BUCKETS,
    );
    this.endToEndSeconds = histogram(
      "end_to_end_seconds",
      "From a frame's producedAt to its prediction being written.",
      LATENCY_BUCKETS,
    );
    this.batchFrames = histogram(
      "batch_frames",
      "Frames per micro-batch run through the model.",
      BATCH_BUCKETS,
    );
    this.transactions = counter(
      "transactions_total",
      "Exactly-once transactions by outcome: committed, aborted (sent again) or fenced.",
      ["result"],
    );
    new Gauge({
      name: "layercache_slo_strictness",
      help: "SLO mode: 1 answers at the thresholds proven for the target agreement, 0 at those for the floor.",
      registers,
      collect() {
        this.set(sources.slo?.() ?? 1);
      },
    });
    this.sloPressure = new Gauge({
      name: "layercache_slo_pressure",
      help: "SLO mode: max(p95 latency, queue delay) over the objective, as of the last control period.",
      registers,
    });
    this.sloSteps = counter("slo_steps_total", "SLO control periods, by what the controller did.", [
      "action",
    ]);
    this.headsVersion = new Gauge({
      name: "layercache_heads_version",
      help: "Version of the cache heads that answered the latest batch.",
      registers,
    });
    new Gauge({
      name: "layercache_worker_info",
      help: "Always 1; labels say which worker, delivery mode and model.",
      labelNames: ["worker_id", "delivery", "model_id"],
      registers,
      collect() {
        this.reset();
        const model = sources.model()?.modelId ?? "";
        this.set({ worker_id: config.workerId, delivery: config.delivery, model_id: model }, 1);
      },
    });
    new Gauge({
      name: "layercache_in_flight_frames",
      help: "Messages consumed and not yet answered.",
      registers,
      collect() {
        this.set(sources.inFlight());
      },
    });
    new Gauge({
      name: "layercache_paused_partitions",
      help: "Frames-topic partitions paused because the pipeline is full.",
      registers,
      collect() {
        this.set(sources.pausedPartitions());
      },
    });
    new Gauge({
      name: "layercache_consumer_lag",
      help: "Messages in a frames-topic partition after the last one handed out, as of the latest fetch.",
      labelNames: ["partition"],
      registers,
      collect() {
        this.reset();
        for (const [partition, lag] of sources.lag()) this.set({ partition: String(partition) }, lag);
      },
    });
    new Gauge({
      name: "layercache_audit_agreement",
      help: "Share of recent shadow audits (the drift window) where the exit agreed with the backbone.",
      labelNames: ["exit"],
      registers,
      collect() {
        this.reset();
        for (const a of sources.audit())
          if (a.windowAudited > 0) this.set({ exit: exitLabel(a.exit) }, a.windowAgreed / a.windowAudited);
      },
    });
    new Gauge({
      name: "layercache_exit_open",
      help: "1 while the exit is open (its head may answer), 0 while closed; the heads that answer now.",
      labelNames: ["exit"],
      registers,
      collect() {
        this.reset();
        for (const e of sources.exits?.() ?? []) this.set({ exit: exitLabel(e.exit) }, e.open ? 1 : 0);
      },
    });
    new Gauge({
      name: "layercache_exit_threshold",
      help: "Confidence at or above which an open exit answers, proven on held-out frames (absent while closed).",
      labelNames: ["exit"],
      registers,
      collect() {
        this.reset();
        for (const e of sources.exits?.() ?? [])
          if (e.open && e.threshold !== null) this.set({ exit: exitLabel(e.exit) }, e.threshold);
      },
    });
    this.sharingMetrics(sources, registers);
    followTotal(
      "drift_alarms_total",
      "Drift alarms the shadow audit raised where this replica trains: the exits closed until proven again.",
      registers,
      () => sources.driftAlarms?.() ?? 0,
    );
    followTotal(
      "examples_rejected_total",
      "Examples the trainer left out where this replica trains: non-finite features or logits, or a target that is not a distribution.",
      registers,
      () => sources.examplesRejected?.() ?? 0,
    );
    new Gauge({
      name: "layercache_audit_window_frames",
      help: "Shadow audits in the drift window behind layercache_audit_agreement.",
      labelNames: ["exit"],
      registers,
      collect() {
        this.reset();
        for (const a of sources.audit()) this.set({ exit: exitLabel(a.exit) }, a.windowAudited);
      },
    });
  }

  /**
   * Sharing the cache (docs/sharing.md). The inference thread reports totals;
   * a counter follows them by the difference at each scrape. All stay at 0 on
   * a replica that does not share.
   */
  private sharingMetrics(sources: GaugeSources, registers: Registry[]): void {
    const flag = (name: string, help: string, read: (s: SharingStatus) => boolean) =>
      new Gauge({
        name: `layercache_${name}`,
        help,
        registers,
        collect() {
          const s = sources.sharing?.();
          this.set(s && read(s) ? 1 : 0);
        },
      });
    flag(
      "trainer_lease_held",
      "1 while this replica holds the trainer lease and trains the heads.",
      (s) => s.training,
    );
    flag(
      "trainer_holding_back",
      "1 while a trainer that took over holds new heads back until its calibration is as good.",
      (s) => s.holdingBack,
    );
    flag(
      "redis_connected",
      "1 while the connection to the shared cache state in Redis is up.",
      (s) => s.redisConnected,
    );
    new Gauge({
      name: "layercache_shared_snapshot_version",
      help: "Newest shared cache snapshot version this replica adopted or published.",
      registers,
      collect() {
        this.set(sources.sharing?.()?.snapshotVersion ?? 0);
      },
    });
    for (const [field, name, help] of SHARING_TOTALS) {
      followTotal(name, help, registers, () => Number(sources.sharing?.()?.[field] ?? 0));
    }
  }

  /** Shows every exit (and each transaction outcome) at 0 before it first happens. */
  modelLoaded(model: ModelInfo, delivery: Config["delivery"]): void {
    if (this.labelledExits) return;
    this.labelledExits = true;
    for (let e = -1; e < model.exits; e++) this.exitHits.inc({ exit: exitLabel(e) }, 0);
    if (delivery === "exactly-once")
      for (const result of ["committed", "aborted", "fenced"] as const) this.transactions.inc({ result }, 0);
  }

  consumed(): void {
    this.framesConsumed.inc();
  }

  batch(outcomes: OutcomeColumns): void {
    this.batchFrames.observe(outcomes.label.length);
    let version = -Infinity;
    for (const v of outcomes.headsVersion) version = Math.max(version, v);
    if (Number.isFinite(version)) this.headsVersion.set(version);
  }

  predicted(p: Prediction): void {
    this.predictions.inc();
    this.exitHits.inc({ exit: exitLabel(p.exit) });
    if (p.audited) this.audited.inc();
    if (p.exactHit) this.exactHits.inc();
    this.macsExecuted.inc(p.macs);
    this.macsSaved.inc(p.macsSaved);
    this.queueSeconds.observe(Math.max(0, p.queueMs) / 1000);
    this.computeSeconds.observe(p.computeMs / 1000);
    this.endToEndSeconds.observe(Math.max(0, p.endToEndMs) / 1000);
  }

  deadLettered(reason: string): void {
    this.deadLetters.inc({ reason });
  }

  sloStep(step: ControlStep): void {
    this.sloPressure.set(step.pressure);
    this.sloSteps.inc({ action: step.action satisfies ControlAction });
  }

  transaction(result: TransactionResult): void {
    this.transactions.inc({ result });
  }
}
