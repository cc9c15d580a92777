/**
 * Undo steps for what a benchmark brought up (topics, workers, consumers),
 * run in reverse order whatever happened; a step that fails is reported and
 * the rest still run.
 */
export class Teardown {
  private readonly steps: { what: string; run: () => Promise<void> }[] = [];

  constructor(private readonly say: (line: string) => void) {}

  /** `what` completes "could not ..." in the report of a failed step. */
  push(what: string, run: () => Promise<void>): void {
    this.steps.push({ what, run });
  }

  async run(): Promise<void> {
    for (let step = this.steps.pop(); step; step = this.steps.pop()) {
      try {
        await step.run();
      } catch (err) {
        this.say(`cleanup: could not ${step.what}: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
  }
}
