/**
 * Commits the done prefix of a ledger (offsets.ts): at most one commit
 * request at a time, requests that come meanwhile folded into the next one,
 * and a failed commit only logged (those frames stay uncommitted and are
 * delivered again if this member goes; nothing is lost).
 */
import type { Logger } from "../../telemetry/logger.ts";
import type { CommitOffset, OffsetLedger } from "./offsets.ts";

/**
 * Commits offsets of `ledger`'s partitions; resolves with those it committed, which can be a part
 * of them (exactly once: one transaction per partition, each may fail alone). Rejects when none was.
 */
export type CommitFn = (offsets: CommitOffset[], ledger: OffsetLedger) => Promise<readonly CommitOffset[]>;

export class OffsetCommitter {
  private wanted = false;
  private queued = false;
  private running: Promise<void> | undefined;

  constructor(
    /** The ledger to commit from: the current generation's, looked up at each commit. */
    private readonly ledger: () => OffsetLedger,
    private readonly commit: CommitFn,
    private readonly log: Logger,
  ) {}

  /** Commits now (after any commit in progress); resolves when nothing is left to commit. */
  commitNow(): Promise<void> {
    this.wanted = true;
    this.running ??= (async () => {
      while (this.wanted) {
        this.wanted = false;
        await this.commitOnce(this.ledger());
      }
      this.running = undefined;
    })();
    return this.running;
  }

  /** Acknowledgements arrive a batch at a time: one commit per event-loop turn is plenty. */
  commitSoon(): void {
    if (this.queued) return;
    this.queued = true;
    setImmediate(() => {
      this.queued = false;
      void this.commitNow();
    });
  }

  private async commitOnce(ledger: OffsetLedger): Promise<void> {
    const offsets = ledger.committable();
    if (offsets.length === 0) return;
    try {
      const committed = await this.commit(offsets, ledger);
      ledger.markCommitted(committed);
      this.log.trace({ offsets: committed }, "committed");
    } catch (err) {
      if (refusedByGroupChange(err))
        this.log.info({ offsets }, "offset commit refused: the group is rebalancing");
      else this.log.warn({ err, offsets }, "offset commit failed");
    }
  }
}

/** Broker answers (Kafka protocol error types) that only mean this member's generation is over. */
const GROUP_CHANGE = new Set(["REBALANCE_IN_PROGRESS", "ILLEGAL_GENERATION", "UNKNOWN_MEMBER_ID"]);

function refusedByGroupChange(err: unknown): boolean {
  const typeOf = (e: unknown) => (e && typeof e === "object" && "type" in e ? e.type : undefined);
  const cause = err && typeof err === "object" && "cause" in err ? err.cause : undefined;
  return [typeOf(err), typeOf(cause)].some((t) => typeof t === "string" && GROUP_CHANGE.has(t));
}
