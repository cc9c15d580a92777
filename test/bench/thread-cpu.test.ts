/**
 * Where the Kafka bench's CPU goes (bench/lib/thread-cpu.ts, bench/kafka/report.ts):
 * /proc stat lines read, a worker's threads told apart by the ids its log
 * names, and the figures per frame. The last test reads this process's own
 * threads from /proc (Linux only).
 */
import { Worker } from "node:worker_threads";
import { existsSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { sampleThreads, splitWorkerCpu, statCpuSeconds, threadRoles } from "../../bench/lib/thread-cpu.ts";
import { cpuPerFrame } from "../../bench/kafka/report.ts";

/** A /proc/<pid>/stat line with the given command name, user and system ticks. */
function statLine(name: string, utime: number, stime: number): string {
  // pid (comm) state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt utime stime ...
  return `4242 (${name}) R 1 4242 4242 0 -1 4194560 100 0 0 0 ${utime} ${stime} 0 0 20 0 7 0 123 456 789`;
}

describe("thread CPU", () => {
  it("reads user plus system time from a stat line, whatever the command name holds", () => {
    expect(statCpuSeconds(statLine("node", 250, 50), 100)).toBeCloseTo(3.0, 9);
    // A name with spaces and a ")" of its own: fields count from the last ")".
    expect(statCpuSeconds(statLine("my ) odd name", 7, 3), 100)).toBeCloseTo(0.1, 9);
    expect(statCpuSeconds(statLine("node", 500, 0), 250)).toBeCloseTo(2.0, 9);
    expect(() => statCpuSeconds("garbage", 100)).toThrow(/not a \/proc stat line/);
    expect(() => statCpuSeconds("1 (x) R 1", 100)).toThrow(/no CPU times/);
  });

  it("names the inference and learner threads from the ids a worker logs", () => {
    const log = [
      '{"level":30,"msg":"starting worker"}',
      '{"level":30,"component":"inference","modelId":"m","tid":1001,"msg":"model loaded"}',
      'not json, with a "tid" in it',
      '{"level":30,"component":"learner","tid":1002,"msg":"learner thread started"}',
      '{"level":30,"tid":1003,"msg":"something else"}',
      '{"level":30,"tid":"1004","msg":"model loaded"}',
    ].join("\n");
    expect([...threadRoles(log)]).toEqual([
      [1001, "inference"],
      [1002, "learner"],
    ]);
  });

  it("splits a worker's CPU between two samples by thread, a thread started since counting from zero", () => {
    const pid = 1000;
    const before = new Map([
      [1000, 1.0],
      [1001, 5.0],
      [1002, 2.0],
      [1005, 0.5],
    ]);
    const after = new Map([
      [1000, 1.5],
      [1001, 9.0],
      [1002, 3.25],
      [1005, 0.75],
      // A helper thread that started after the first sample.
      [1006, 0.25],
    ]);
    const roles = threadRoles(
      '{"tid":1001,"msg":"model loaded"}\n{"tid":1002,"msg":"learner thread started"}',
    );
    expect(splitWorkerCpu(pid, before, after, roles)).toEqual({
      main: 0.5,
      inference: 4.0,
      learner: 1.25,
      other: 0.5,
    });
  });

  it("turns an arm's CPU seconds into ms per frame and the cores they kept busy", () => {
    const cpu = {
      workers: { main: 2, inference: 10, learner: 4, other: 3 },
      broker: 1,
      bench: 2,
      wallS: 11,
    };
    expect(cpuPerFrame(cpu, 10_000)).toEqual({
      main: 0.2,
      inference: 1,
      learner: 0.4,
      other: 0.3,
      broker: 0.1,
      bench: 0.2,
      cores: 2,
    });
    expect(cpuPerFrame({ ...cpu, broker: null }, 10_000)?.broker).toBeNull();
    expect(cpuPerFrame(null, 10_000)).toBeNull();
    expect(cpuPerFrame(cpu, 0)).toBeNull();
  });

  it.runIf(existsSync("/proc/self/task"))(
    "samples the threads of a live process, a busy one gaining CPU time",
    async () => {
      // A thread that spins for a while, and names its id for us.
      const worker = new Worker(
        `const { parentPort } = require("node:worker_threads");
       const { readlinkSync } = require("node:fs");
       parentPort.postMessage(Number(readlinkSync("/proc/thread-self").split("/").pop()));
       parentPort.once("message", () => { const end = Date.now() + 300; while (Date.now() < end); parentPort.postMessage("done"); });`,
        { eval: true },
      );
      try {
        const tid = await new Promise<number>((resolve) => worker.once("message", resolve));
        const before = sampleThreads(process.pid)!;
        expect(before.has(process.pid)).toBe(true);
        expect(before.has(tid)).toBe(true);
        worker.postMessage("spin");
        await new Promise((resolve) => worker.once("message", resolve));
        const after = sampleThreads(process.pid)!;
        const split = splitWorkerCpu(process.pid, before, after, new Map([[tid, "inference"]]));
        // 300 ms of spinning, in ticks of 10 ms; the main thread mostly waited meanwhile.
        expect(split.inference).toBeGreaterThanOrEqual(0.2);
        expect(split.inference).toBeGreaterThan(split.main);
      } finally {
        await worker.terminate();
      }
      expect(sampleThreads(2 ** 22 + 12345)).toBeUndefined();
    },
  );
});
