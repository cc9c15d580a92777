/**
 * Where a benchmark's CPU goes, thread by thread: the CPU time of every thread
 * of a process from Linux's /proc/<pid>/task/<tid>/stat, sampled before and
 * after a measured stretch. A worker's threads are told apart by the ids its
 * inference and learner threads log when they start ("model loaded",
 * "learner thread started", field `tid`); the main thread's id is the
 * process's; every other thread (V8's garbage-collection helpers, libuv's
 * pool, the module loader) counts as "other". Elsewhere than Linux there is
 * no /proc, and every figure is null.
 */
import { execFileSync } from "node:child_process";
import { readFileSync, readdirSync } from "node:fs";

export const WORKER_THREADS = ["main", "inference", "learner", "other"] as const;
export type WorkerThread = (typeof WORKER_THREADS)[number];

/** No CPU time yet, per kind of worker thread. */
export function noWorkerCpu(): Record<WorkerThread, number> {
  return Object.fromEntries(WORKER_THREADS.map((t) => [t, 0])) as Record<WorkerThread, number>;
}

/** CPU seconds per thread id. */
export type ThreadTimes = Map<number, number>;

let ticksPerSecond: number | undefined;

/** The kernel's clock ticks per second (USER_HZ), in which /proc reports CPU time. */
function clockTicks(): number {
  if (ticksPerSecond === undefined) {
    try {
      ticksPerSecond = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim());
    } catch {
      ticksPerSecond = NaN;
    }
    // 100 on every Linux architecture Node runs on.
    if (!(ticksPerSecond > 0)) ticksPerSecond = 100;
  }
  return ticksPerSecond;
}

/**
 * User plus system CPU seconds from one /proc stat line. The command name (in
 * parentheses) may hold spaces and parentheses itself, so fields count from
 * the last ")": utime and stime are the 14th and 15th fields of the line.
 */
export function statCpuSeconds(stat: string, ticks = clockTicks()): number {
  const close = stat.lastIndexOf(")");
  if (close < 0) throw new Error(`not a /proc stat line: ${stat.slice(0, 80)}`);
  // Fields after the name start with the 3rd (state): utime is the 12th of them.
  const fields = stat
    .slice(close + 2)
    .trim()
    .split(/\s+/);
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  if (!Number.isFinite(utime) || !Number.isFinite(stime)) {
    throw new Error(`no CPU times in /proc stat line: ${stat.slice(0, 80)}`);
  }
  return (utime + stime) / ticks;
}

/** CPU seconds of each thread of process `pid` so far; undefined without /proc or the process. */
export function sampleThreads(pid: number): ThreadTimes | undefined {
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return undefined;
  }
  const times: ThreadTimes = new Map();
  for (const tid of tids) {
    try {
      times.set(Number(tid), statCpuSeconds(readFileSync(`/proc/${pid}/task/${tid}/stat`, "utf8")));
    } catch {
      // The thread ended between the listing and the read.
    }
  }
  return times;
}

/** CPU seconds of the whole process `pid` so far; undefined without /proc or the process. */
export function processCpuSeconds(pid: number): number | undefined {
  try {
    return statCpuSeconds(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return undefined;
  }
}

/** The thread ids a worker's log names: its inference and learner threads. */
export function threadRoles(log: string): Map<number, WorkerThread> {
  const roles = new Map<number, WorkerThread>();
  for (const line of log.split("\n")) {
    if (!line.includes('"tid"')) continue;
    let entry: { msg?: unknown; tid?: unknown };
    try {
      entry = JSON.parse(line) as typeof entry;
    } catch {
      continue;
    }
    if (typeof entry.tid !== "number") continue;
    if (entry.msg === "model loaded") roles.set(entry.tid, "inference");
    else if (entry.msg === "learner thread started") roles.set(entry.tid, "learner");
  }
  return roles;
}

/**
 * CPU seconds a worker process spent between two samples, by thread, added
 * to `split` (several replicas sum into one): threads that started after
 * `before` count from zero; threads that ended before `after` are lost (a
 * worker's threads live as long as it does).
 */
export function splitWorkerCpu(
  pid: number,
  before: ThreadTimes,
  after: ThreadTimes,
  roles: ReadonlyMap<number, WorkerThread>,
  split: Record<WorkerThread, number> = noWorkerCpu(),
): Record<WorkerThread, number> {
  for (const [tid, seconds] of after) {
    const role = tid === pid ? "main" : (roles.get(tid) ?? "other");
    split[role] += Math.max(0, seconds - (before.get(tid) ?? 0));
  }
  return split;
}
