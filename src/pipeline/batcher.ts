/**
 * Micro-batching: items are gathered into batches of at most `maxItems`. A
 * partial batch waits at most `lingerMs` from its oldest item for more; at
 * most `maxConcurrent` batches run at once, and while they do, items keep
 * gathering (so a busy model gets full batches without any lingering). The
 * number of waiting items is bounded by the caller (the consumer's in-flight
 * window), not here.
 */
export interface BatcherOptions<T> {
  maxItems: number;
  lingerMs: number;
  maxConcurrent: number;
  /** Runs one batch; must not reject (it answers or fails its own items). */
  run: (items: T[]) => Promise<void>;
}

export class MicroBatcher<T> {
  /** Waiting items with the performance.now() of their arrival, oldest first. */
  private pending: { item: T; at: number }[] = [];
  private timer: NodeJS.Timeout | undefined;
  private running = 0;
  private flushing = false;
  private idleWaiters: (() => void)[] = [];

  constructor(private readonly opts: BatcherOptions<T>) {}

  add(item: T): void {
    this.pending.push({ item, at: performance.now() });
    this.pump();
  }

  /** From now on partial batches go without lingering (shutdown: drain what is there). */
  flush(): void {
    this.flushing = true;
    this.pump();
  }

  get size(): number {
    return this.pending.length;
  }

  /** Resolves when nothing is pending or running. */
  idle(): Promise<void> {
    if (this.pending.length === 0 && this.running === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private pump(): void {
    while (this.running < this.opts.maxConcurrent && this.pending.length > 0) {
      const waited = performance.now() - this.pending[0]!.at;
      const ready =
        this.pending.length >= this.opts.maxItems || this.flushing || waited >= this.opts.lingerMs;
      if (!ready) {
        this.armTimer(this.opts.lingerMs - waited);
        return;
      }
      this.dispatch(this.pending.splice(0, this.opts.maxItems).map((p) => p.item));
    }
    if (this.pending.length === 0 && this.running === 0) this.wakeIdle();
  }

  private dispatch(items: T[]): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.running++;
    void this.opts.run(items).finally(() => {
      this.running--;
      this.pump();
    });
  }

  private armTimer(ms: number): void {
    if (this.timer) return;
    this.timer = setTimeout(
      () => {
        this.timer = undefined;
        this.pump();
      },
      Math.max(0, Math.ceil(ms)),
    );
  }

  private wakeIdle(): void {
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of waiters) w();
  }
}
