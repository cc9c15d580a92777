/**
 * Crash safety, with the worker as a real process (`node bin/layercache.js
 * worker`): it is SIGKILLed mid-stream, a fresh one takes over, and every
 * frame still gets at least one prediction. Frames the first worker answered
 * but had not committed are answered again (at least once: duplicates are
 * counted, not forbidden). The second worker is then stopped with SIGTERM
 * sent twice, and must still shut down cleanly. The cache runs with its
 * default options.
 */
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ROOT } from "../setup/discovery.ts";
import type { TestTopics } from "./helpers.ts";
import {
  TopicCollector,
  committedToEnd,
  fashionFrames,
  pipelineFixture,
  produce,
  workerEnv,
} from "./helpers.ts";

const FIRST = 1_500;
const SECOND = 1_000;

interface Child {
  process: ChildProcess;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  output: () => string;
  /** Resolves once the child's output contains `text` (or it has exited). */
  printed: (text: string) => Promise<void>;
}

function startChild(topics: TestTopics, workerId: string): Child {
  // Only what the test sets: a LAYERCACHE_ variable from the outer environment would change the run.
  const inherited = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !k.startsWith("LAYERCACHE_")),
  );
  const child = spawn(process.execPath, [join(ROOT, "bin", "layercache.js"), "worker"], {
    cwd: ROOT,
    env: { ...inherited, ...workerEnv(topics, { LAYERCACHE_WORKER_ID: workerId, LOG_LEVEL: "info" }) },
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

describe("crash safety (worker as a child process)", () => {
  const fixture = pipelineFixture("crash", 4);
  const kafka = fixture.kafka;
  const children: Child[] = [];

  // Registered after the fixture, so it runs first: children go before their topics.
  afterAll(async () => {
    for (const c of children) c.process.kill("SIGKILL");
    await Promise.all(children.map((c) => c.exit));
  });

  it("answers every frame at least once across a SIGKILL and a restart", async () => {
    const { admin, topics } = fixture;
    const first = await fashionFrames("c", FIRST);
    const second = await fashionFrames("c", SECOND, FIRST);
    await produce(
      kafka,
      topics.frames,
      first.map((f) => f.message),
    );
    const predictions = await new TopicCollector(kafka, topics.predictions).start();
    const distinct = () => new Set(predictions.messages.map((m) => String(m.key))).size;
    try {
      const doomed = startChild(topics, "crash-1");
      children.push(doomed);
      // Mid-stream by construction: some answers are out, and the second half is not even written yet.
      await predictions.until(() => distinct() >= 300);
      doomed.process.kill("SIGKILL");
      expect((await doomed.exit).signal).toBe("SIGKILL");
      const answeredBeforeKill = distinct();

      await produce(
        kafka,
        topics.frames,
        second.map((f) => f.message),
      );
      const fresh = startChild(topics, "crash-2");
      children.push(fresh);
      await committedToEnd(admin, topics.group, topics.frames);
      await predictions.caughtUp(admin);
      // A second signal while shutting down must not cut the shutdown short.
      fresh.process.kill("SIGTERM");
      await fresh.printed("signal received");
      fresh.process.kill("SIGTERM");
      const exit = await fresh.exit;
      expect(exit, fresh.output()).toEqual({ code: 0, signal: null });
      expect(fresh.output()).toContain("worker stopped");

      const ids = predictions.messages.map((m) => String(m.key));
      const counts = new Map<string, number>();
      for (const id of ids) counts.set(id, (counts.get(id) ?? 0) + 1);
      expect([...counts.keys()].sort()).toEqual([...first, ...second].map((f) => f.id).sort());
      const duplicates = ids.length - counts.size;
      process.stderr.write(
        `[crash] ${answeredBeforeKill} frames answered before SIGKILL; ` +
          `${ids.length} predictions for ${counts.size} frames (${duplicates} duplicates)\n`,
      );
    } finally {
      await predictions.stop();
    }
  }, 300_000);
});
