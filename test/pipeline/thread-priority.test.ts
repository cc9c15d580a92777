/**
 * The learner thread's lower priority (src/pipeline/thread-priority.ts): a
 * thread raises its own nice value, never lowers it, and the process's other
 * threads keep theirs. Linux only: elsewhere the helper says why not.
 */
import { once } from "node:events";
import { existsSync } from "node:fs";
import { getPriority } from "node:os";
import { describe, expect, it } from "vitest";
import { startTsWorker } from "../../src/pipeline/ts-worker.ts";
import type { PriorityOutcome } from "../../src/pipeline/thread-priority.ts";

const ENTRY = new URL("../helpers/nice-thread.ts", import.meta.url);

async function inThread(asked: number[]): Promise<{ outcomes: PriorityOutcome[]; processNice: number }> {
  const worker = startTsWorker(ENTRY, { workerData: asked });
  const [report] = (await once(worker, "message")) as [{ outcomes: PriorityOutcome[]; processNice: number }];
  await worker.terminate();
  return report;
}

const before = getPriority(process.pid);

describe.runIf(existsSync("/proc/thread-self") && before < 19)("setThreadNice", () => {
  it("lowers the calling thread's priority only, and never raises it back", async () => {
    const lowered = Math.min(before + 5, 19);
    const { outcomes, processNice } = await inThread([lowered, lowered - 1, 0]);
    const [first, second, third] = outcomes;
    expect(first).toMatchObject({ applied: true, nice: lowered });
    // Asking for less than it has leaves it where it is (raising priority needs privilege).
    expect(second).toMatchObject({ applied: true, nice: lowered });
    expect(third).toMatchObject({ applied: true, nice: lowered });
    expect(first!.applied && first!.threadId).not.toBe(process.pid);
    // The process, its main thread included, keeps its own.
    expect(processNice).toBe(before);
    expect(getPriority(process.pid)).toBe(before);
  });
});
