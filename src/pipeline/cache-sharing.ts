/**
 * The inference thread's part in a fleet that shares one cache through Redis
 * (docs/sharing.md, "Wiring it into the worker"). It owns the replica's
 * shared-state pieces and the OnlineCache built on them:
 *
 * - the cache starts from the shared snapshot (if Redis answers within a few
 *   seconds; else cold), and a watcher follows newer versions, which are
 *   adopted before each batch, never inside one;
 * - the replica campaigns for the trainer lease for as long as it runs. The
 *   holder trains on its own frames and on the examples the others forward
 *   through the stream, and publishes through the fenced store; the others
 *   forward what their engines see and neither train nor publish. Roles change
 *   between batches, when the lease says so (or when a publish is refused).
 *
 * The trainer also keeps a copy of its calibration evidence in Redis
 * (src/state/evidence.ts); a replica that takes the lease over reads it into
 * its calibration set first, so it need not gather thousands of held-out
 * frames again before its snapshots may replace the fleet's.
 *
 * Redis trouble never stops inference: the replica keeps answering with the
 * heads it holds, forwarded examples are buffered and dropped when the
 * buffer is full (counted), and everything resumes by itself when Redis is
 * back. Only errors that are not Redis's (a bug in training) reach the caller.
 */
import type { CacheOptions } from "../cache/options.ts";
import type { HeadTrainer, StepBudget } from "../cache/trainer.ts";
import { OnlineCache } from "../cache/online-cache.ts";
import type { CacheSnapshot } from "../cache/state.ts";
import { isLayercacheError } from "../errors/index.ts";
import type { SegmentedBackbone } from "../model/backbone.ts";
import type { TrainingExample } from "../state/example-codec.ts";
import type { ExampleConsumer } from "../state/example-consumer.ts";
import { EvidenceLog } from "../state/evidence.ts";
import type { ExampleSink } from "../state/examples.ts";
import { ExampleForwarder, ExampleStream, deliverExample } from "../state/examples.ts";
import { TrainerLease } from "../state/lease.ts";
import { layoutOf } from "../state/layout.ts";
import { StateConnection } from "../state/redis-connection.ts";
import { RedisStateStore } from "../state/redis-store.ts";
import type { SnapshotWatcher } from "../state/watcher.ts";
import type { Logger } from "../telemetry/logger.ts";
import type { SharingInit, SharingStatus } from "./inference-protocol.ts";
import type { LocalIntake } from "./learner-feed.ts";

/** How long a starting replica waits for Redis before it starts cold (the watcher catches up later). */
const STARTUP_WAIT_MS = 5_000;
/**
 * Most forwarded examples the trainer takes between two batches. It trains on
 * its own frames too, so this bounds its extra work; a fleet that forwards
 * more than that loses the oldest examples to the stream's cap, never memory.
 */
const EXAMPLES_PER_STEP = 64;
/**
 * Most held-out frames kept in Redis for a successor (at most the calibration
 * capacity): about 41 MB for the bundled model, as much as the example stream.
 */
const EVIDENCE_CAP = 2_048;

/**
 * Which part of the replica's sharing this instance plays: all of it (the
 * inference thread learns between batches), or, with a learner thread, the
 * inference thread's `answers` (never campaigns for the lease: it hands what
 * it sees to its learner and adopts) and the learner thread's `trains`
 * (campaigns, and as trainer learns from the stream and from what its own
 * inference thread hands over; its engine answers no frame).
 */
export type SharingPart = "all" | "answers" | "trains";

export interface SharingContext {
  backbone: SegmentedBackbone;
  options: CacheOptions;
  init: SharingInit;
  workerId: string;
  log: Logger;
  /** Default "all". */
  part?: SharingPart;
  /**
   * "answers" with a learner thread: where the forwarder sends what the
   * engine sees, the replica's own learner (learner-feed.ts) instead of Redis.
   */
  sink?: ExampleSink;
  /** "trains": what the replica's inference thread handed over, taken at each step. */
  intake?: LocalIntake;
}

/**
 * The learner thread's steps: it learns from no batches of its own, so it
 * reads more of the stream per step than a trainer that does, and trains at
 * most a few mini-batch steps between two reads (about 8 ms each for the bundled model), so that it keeps
 * up with the stream and never loses examples to its cap for want of reading;
 * steps owed beyond LEARNER_BUDGET.maxOwed are dropped (StepBudget).
 */
const LEARNER_EXAMPLES_PER_STEP = 256;
const LEARNER_BUDGET: StepBudget = { maxSteps: 8, maxOwed: 64 };

export class CacheSharing {
  private readonly abort = new AbortController();
  private campaign: Promise<void> = Promise.resolve();
  private consumer: ExampleConsumer | undefined;
  /** The lease token the cache trains under, while it does. */
  private trainingToken: number | undefined;
  private received = 0;
  private auditsReceived = 0;
  private driftAlarms = 0;
  /** Entries read from Redis that were skipped, and examples the trainers here left out (SharingStatus). */
  private examplesInvalid = 0;
  private examplesRejected = 0;
  /** Entries the last step took from the stream. */
  private lastTaken = 0;
  private adopted = 0;
  private published = 0;
  private snapshotVersion: number;
  /** The last problem logged, so that an outage is reported once, not per batch. */
  private problem: string | undefined;
  private holdLogged = false;

  private constructor(
    readonly cache: OnlineCache,
    private readonly connection: StateConnection,
    private readonly store: RedisStateStore,
    private readonly lease: TrainerLease,
    private readonly stream: ExampleStream,
    private readonly evidence: EvidenceLog,
    private readonly watcher: SnapshotWatcher,
    private readonly options: CacheOptions,
    private readonly log: Logger,
    private readonly part: SharingPart,
    private readonly workerId: string,
    private readonly intake: LocalIntake | undefined,
  ) {
    this.snapshotVersion = cache.engine.version;
  }

  /** Connects, builds the cache from the shared snapshot, and starts watching and campaigning. */
  static async start(ctx: SharingContext): Promise<CacheSharing> {
    const { backbone, options, init, workerId, log } = ctx;
    const part = ctx.part ?? "all";
    const modelId = backbone.manifest.modelId;
    const layout = layoutOf(backbone.manifest);
    const prefix = init.keyPrefix;
    const connection = new StateConnection({ url: init.redisUrl, logger: log, name: workerId });
    const lease = new TrainerLease({
      connection,
      prefix,
      modelId,
      holderId: workerId,
      ttlMs: init.leaseTtlMs,
    });
    const audit: { cache?: OnlineCache } = {};
    const store = new RedisStateStore({
      connection,
      prefix,
      modelId,
      layout,
      fencing: lease,
      publisher: workerId,
      audit: () => audit.cache?.audit.totals ?? null,
    });
    const stream = new ExampleStream({ connection, prefix, modelId, layout, producerId: workerId });
    const evidence = new EvidenceLog({
      connection,
      prefix,
      modelId,
      layout,
      producerId: workerId,
      maxLength: Math.min(options.calibrationCapacity, EVIDENCE_CAP),
      temperature: options.temperature,
    });
    try {
      await connection.waitReady(STARTUP_WAIT_MS);
    } catch {
      log.warn(
        { redis: connection.address },
        "Redis does not answer: starting without the shared cache, which follows once it is back",
      );
    }
    const forwarder = new ExampleForwarder(ctx.sink ?? stream, {
      temperature: options.temperature,
      earlyExits: options.teachEarlierExits,
    });
    let cache: OnlineCache;
    try {
      cache = await OnlineCache.create(backbone, options, store.tolerant(), true, {
        forwarder,
        trainsOnly: part === "trains",
      });
    } catch (err) {
      await stream.close();
      await evidence.close();
      await connection.close();
      throw err;
    }
    audit.cache = cache;
    const watcher = store.watch(() => undefined, { after: cache.engine.version });
    const sharing = new CacheSharing(
      cache,
      connection,
      store,
      lease,
      stream,
      evidence,
      watcher,
      options,
      log,
      part,
      workerId,
      ctx.intake,
    );
    if (part !== "answers") sharing.startCampaign();
    log.info(
      { redis: connection.address, prefix, modelId, headsVersion: cache.engine.version, part },
      cache.engine.version > 0
        ? "sharing the cache: started from the shared snapshot"
        : "sharing the cache: no shared snapshot yet",
    );
    return sharing;
  }

  private startCampaign(): void {
    const { lease, log } = this;
    this.campaign = lease
      .campaign(
        {
          onAcquired: (token) => log.debug({ token }, "trainer lease acquired; training from the next batch"),
          onLost: (reason) => log.debug({ reason }, "trainer lease lost; forwarding from the next batch"),
        },
        this.abort.signal,
      )
      .catch((err: unknown) =>
        log.error({ err }, "trainer lease campaign failed; this replica will not train"),
      );
  }

  /**
   * Between batches: the newest snapshot the watcher found, if the engine does
   * not have it yet; resolves once the spans it needs are built.
   */
  async adoptLatest(): Promise<void> {
    const latest = this.watcher.last;
    if (!latest || latest.version <= this.cache.engine.version) return;
    this.cache.engine.adopt(latest);
    this.adopted++;
    this.snapshotVersion = latest.version;
    await this.cache.engine.prepared();
  }

  /**
   * Between batches: takes up or gives up training as the lease says, feeds
   * the trainer what the other replicas forwarded, and trains and publishes
   * when due. Returns the snapshot this replica published, if it did.
   */
  async maintain(): Promise<CacheSnapshot | undefined> {
    await this.adoptLatest();
    const token = this.lease.token;
    if (this.cache.role === "trainer" && token !== this.trainingToken) {
      await this.stopTraining(token === undefined ? "the trainer lease was lost" : "the lease changed hands");
    }
    if (token !== undefined && this.cache.role === "follower") await this.startTraining(token);
    this.takeLocal();
    if (this.cache.role !== "trainer") return undefined;
    await this.takeExamples();
    let published: CacheSnapshot | undefined;
    try {
      published = await this.cache.maintain(this.part === "trains" ? LEARNER_BUDGET : undefined);
    } catch (err) {
      if (isLayercacheError(err, "LEASE_LOST")) {
        await this.stopTraining(err.message);
        return undefined;
      }
      if (!isLayercacheError(err, "SERVICE_UNAVAILABLE")) throw err;
      this.trouble("cannot publish cache heads; the next version will be tried", err.message);
      return undefined;
    }
    this.noteHold();
    const drift = this.cache.newDriftAlarm();
    if (drift) {
      this.driftAlarms++;
      this.log.warn({ headsVersion: this.cache.engine.version }, drift);
    }
    if (published) {
      this.published++;
      this.snapshotVersion = published.version;
      this.problem = undefined;
    }
    return published;
  }

  private async startTraining(token: number): Promise<void> {
    // Carry on from whatever the last trainer published last, and number above it.
    let stored: number;
    try {
      const snapshot = await this.store.current();
      if (snapshot && snapshot.version > this.cache.engine.version) {
        this.cache.engine.adopt(snapshot);
        this.adopted++;
        this.snapshotVersion = snapshot.version;
        await this.cache.engine.prepared();
      }
      stored = snapshot?.version ?? 0;
    } catch (err) {
      if (!isLayercacheError(err, "STATE_INVALID")) {
        // Unreachable: try again after the next batch (the lease may run out meanwhile).
        this.trouble("cannot read the shared snapshot to start training", String(err));
        return;
      }
      // Junk in Redis: a valid publish above its version repairs it.
      stored = await this.store.currentVersion().catch(() => 0);
    }
    const startVersion = Math.max(stored, this.cache.engine.version);
    // A trainer that resumes keeps its own calibration set: no need to read the evidence back.
    const taken = this.cache.resumes(startVersion) ? [] : await this.readEvidence();
    const how = this.cache.becomeTrainer(startVersion, (trainer) => {
      for (const example of taken) this.deliver(trainer, example);
    });
    this.cache.trainer.evidence = this.evidence;
    this.trainingToken = token;
    this.holdLogged = false;
    this.consumer = this.stream.consumer(this.lease.holderId, {
      count: this.part === "trains" ? LEARNER_EXAMPLES_PER_STEP : EXAMPLES_PER_STEP,
    });
    const from =
      how === "resumed"
        ? "where this replica left off"
        : this.cache.engine.version > 0
          ? "the shared snapshot"
          : "scratch";
    const evidence = how === "took-over" ? taken.length : this.cache.trainer.calibration.size;
    this.log.info(
      { token, headsVersion: this.cache.engine.version, startVersion, how, evidence },
      `training the fleet's cache heads from ${from} (trainer lease held), with ${evidence} held-out frames of calibration evidence`,
    );
  }

  /** The last trainer's held-out frames (none if Redis cannot give them: the trainer gathers its own). */
  private async readEvidence() {
    try {
      const { examples, invalid } = await this.evidence.readAll();
      this.examplesInvalid += invalid;
      return examples;
    } catch (err) {
      if (!isLayercacheError(err)) throw err;
      this.trouble("cannot read the calibration evidence; gathering it again", err.message);
      return [];
    }
  }

  private async stopTraining(reason: string): Promise<void> {
    this.cache.becomeFollower();
    this.cache.trainer.evidence = undefined;
    this.trainingToken = undefined;
    const consumer = this.consumer;
    this.consumer = undefined;
    await consumer?.close();
    this.log.info({ reason }, "stopped training the cache heads; forwarding examples to the trainer");
  }

  /**
   * Nothing to do until more arrives: not training, or the last step took
   * nothing from the stream and no training step is owed. A learner thread
   * waits a little then, instead of polling Redis.
   */
  get idle(): boolean {
    if ((this.intake?.size ?? 0) > 0) return false;
    return this.cache.role !== "trainer" || (this.lastTaken === 0 && this.cache.trainer.stepsOwed === 0);
  }

  /**
   * What this replica's inference thread handed over since the last step: to
   * the trainer here while this replica holds the lease, else through Redis
   * to the replica that does, as a follower forwards.
   */
  private takeLocal(): void {
    if (!this.intake || this.intake.size === 0) return;
    const trainer = this.cache.role === "trainer" ? this.cache.trainer : undefined;
    for (const entry of this.intake.take()) {
      if (!trainer) {
        if (entry.kind === "audit") this.stream.offerAudit(entry.record);
        else this.stream.offer(entry.example);
        continue;
      }
      // This replica's own: neither sent through Redis nor received from another replica.
      if (entry.kind === "audit") {
        const { exit, agreed, lenient, headsVersion } = entry.record;
        trainer.takeAudit(exit, agreed, lenient, headsVersion);
      } else {
        this.deliver(trainer, entry.example);
      }
    }
  }

  /** One example to the trainer, counting it if the trainer leaves it out (trainer.ts, `acceptable`). */
  private deliver(trainer: HeadTrainer, example: TrainingExample): void {
    const before = trainer.stats.rejected;
    deliverExample(trainer, example, this.options.temperature);
    this.examplesRejected += trainer.stats.rejected - before;
  }

  /** Hands the trainer the examples and audit verdicts other replicas forwarded. */
  private async takeExamples(): Promise<void> {
    if (!this.consumer) return;
    let examples;
    const invalidBefore = this.consumer.stats.invalid;
    try {
      examples = await this.consumer.read();
    } catch (err) {
      if (!isLayercacheError(err)) throw err;
      this.trouble("cannot read forwarded examples", err.message);
      return;
    }
    this.examplesInvalid += this.consumer.stats.invalid - invalidBefore;
    this.lastTaken = examples.length;
    const trainer = this.cache.trainer;
    for (const entry of examples) {
      if (entry.kind === "audit") {
        // A replica that trains between its own batches recorded its own audits already (when it
        // forwarded them as a follower, and the trainer before had not read them yet).
        if (this.part === "all" && entry.producer === this.workerId) continue;
        trainer.takeAudit(entry.exit, entry.agreed, entry.lenient, entry.headsVersion);
        this.auditsReceived++;
      } else {
        this.deliver(trainer, entry);
        this.received++;
      }
    }
    this.problem = undefined;
  }

  private noteHold(): void {
    if (this.cache.holdingBack && !this.holdLogged) {
      this.holdLogged = true;
      this.log.info(
        "holding new heads back until this trainer's calibration is as good as the snapshot it took over",
      );
    } else if (!this.cache.holdingBack && this.holdLogged) {
      this.holdLogged = false;
      this.log.info("calibration caught up: publishing new heads again");
    }
  }

  /** Logs the first Redis problem of an outage as a warning, later ones until something works again at debug. */
  private trouble(what: string, detail: string): void {
    const level = this.problem === undefined ? "warn" : "debug";
    this.problem = what;
    this.log[level]({ err: detail }, what);
  }

  status(): SharingStatus {
    const stream = this.stream.stats;
    return {
      training: this.cache.role === "trainer",
      holdingBack: this.cache.holdingBack,
      redisConnected: this.connection.ready,
      snapshotVersion: this.snapshotVersion,
      adopted: this.adopted,
      published: this.published,
      examplesForwarded: stream.sent,
      examplesDropped: stream.dropped + (this.intake?.dropped ?? 0),
      examplesReceived: this.received,
      auditsReceived: this.auditsReceived,
      driftAlarms: this.driftAlarms,
      examplesInvalid: this.examplesInvalid,
      examplesRejected: this.examplesRejected,
    };
  }

  /** Gives the lease up (so another replica takes over at once), sends what is buffered, disconnects. */
  async close(): Promise<void> {
    this.abort.abort();
    await this.campaign;
    await this.consumer?.close();
    await this.watcher.stop();
    await this.stream.close();
    await this.evidence.close();
    await this.store.close();
    await this.connection.close();
  }
}
