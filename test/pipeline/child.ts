/**
 * A worker as a real process (`node --single-threaded-gc bin/layercache.js
 * worker`, with the node flags workers ship with) for the crash tests: its
 * output is kept, and a test can wait for a line of it or for its exit.
 * Only the environment the test gives it counts: LAYERCACHE_ variables of
 * the outer environment are not passed on.
 */
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { WORKER_ARGS } from "../../src/tools/worker-replica.ts";
import { ROOT } from "../setup/discovery.ts";
import type { TestTopics } from "./helpers.ts";
import { workerEnv } from "./helpers.ts";

export interface Child {
  process: ChildProcess;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  output: () => string;
  /** Resolves once the child's output contains `text` (or it has exited). */
  printed: (text: string) => Promise<void>;
}

export function startChild(topics: TestTopics, workerId: string, extra: Record<string, string> = {}): Child {
  const inherited = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !k.startsWith("LAYERCACHE_")),
  );
  const child = spawn(process.execPath, WORKER_ARGS, {
    cwd: ROOT,
    env: {
      ...inherited,
      ...workerEnv(topics, { LAYERCACHE_WORKER_ID: workerId, LOG_LEVEL: "info", ...extra }),
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  let exited = false;
  let waiters: (() => void)[] = [];
  const wake = () => {
    const w = waiters;
    waiters = [];
    for (const f of w) f();
  };
  const append = (d: Buffer) => {
    output += d.toString();
    wake();
  };
  child.stdout!.on("data", append);
  child.stderr!.on("data", append);
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("exit", (code, signal) => {
      exited = true;
      wake();
      resolve({ code, signal });
    }),
  );
  const printed = async (text: string) => {
    while (!output.includes(text) && !exited) await new Promise<void>((resolve) => waiters.push(resolve));
  };
  return { process: child, exit, output: () => output, printed };
}
