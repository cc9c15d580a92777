/**
 * The scheduling priority of the calling thread alone. On Linux every thread
 * has a nice value of its own: setpriority(2) given a thread id changes that
 * thread only (its man page, "Bugs"), and /proc/thread-self names the
 * calling thread's id. The learner thread lowers its own priority this way,
 * so that on a machine without a core to spare the inference thread and the
 * Kafka loop answer first and training takes what they leave; the process
 * and its other threads keep theirs. Raising a nice value needs no privilege.
 */
import { readlinkSync } from "node:fs";
import { getPriority, setPriority } from "node:os";

export type PriorityOutcome =
  { applied: true; threadId: number; nice: number } | { applied: false; reason: string };

/**
 * The operating system's id of the calling thread (what `top -H` and
 * /proc/<pid>/task list), or undefined where there is no /proc/thread-self.
 */
export function osThreadId(): number | undefined {
  try {
    // "<pid>/task/<tid>"
    const id = Number(readlinkSync("/proc/thread-self").split("/").pop());
    return Number.isInteger(id) && id > 0 ? id : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Raises the calling thread's nice value to `nice` (never lowers it); says
 * why not where it cannot (not Linux, no /proc, refused).
 */
export function setThreadNice(nice: number): PriorityOutcome {
  const threadId = osThreadId();
  if (threadId === undefined) {
    return {
      applied: false,
      reason: "no /proc/thread-self (not Linux): the thread keeps the process's priority",
    };
  }
  try {
    // Only ever lower the thread's priority: raising it back needs privilege.
    if (nice > getPriority(threadId)) setPriority(threadId, nice);
    return { applied: true, threadId, nice: getPriority(threadId) };
  } catch (err) {
    return { applied: false, reason: `setpriority refused: ${(err as Error).message}` };
  }
}
