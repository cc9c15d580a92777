/**
 * A `layercache worker` replica as a child process (`node
 * --single-threaded-gc bin/layercache.js worker`), for the demo: its logs go
 * to a file, `ready` resolves once it has loaded the model and joined its
 * group, and `stop` sends SIGTERM and waits for the ordered shutdown (SIGKILL
 * after a grace period).
 */
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { createWriteStream } from "node:fs";
import type { WriteStream } from "node:fs";
import { join } from "node:path";
import { FIELDS } from "../config/index.ts";
import type { Config, FieldKey, FieldSpec } from "../config/index.ts";
import { LayercacheError } from "../errors/index.ts";
import { ROOT } from "./local-services.ts";

/**
 * Node flags a worker process runs with (also in bin/layercache.js's first
 * line and the Dockerfile): V8 collects garbage on the thread that made it
 * instead of on helper threads, which on 2 cores cost the cached worker more
 * CPU than they saved it (docs/worker.md, "Garbage collection").
 */
export const WORKER_NODE_FLAGS = ["--single-threaded-gc"] as const;

/** `node`'s arguments for a worker process: its flags, the entry point, the command. */
export const WORKER_ARGS: readonly string[] = [...WORKER_NODE_FLAGS, join(ROOT, "bin", "layercache.js"), "worker"];

/** The worker's log message once it is consuming (src/pipeline/worker.ts). */
const READY_MESSAGE = '"msg":"worker started"';
const LOG_TAIL_CHARS = 4_000;

export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export class WorkerReplica {
  readonly exited: Promise<ExitStatus>;
  private readonly child: ChildProcess;
  private readonly logStream: WriteStream;
  private recent = "";
  private isReady = false;
  private status: ExitStatus | undefined;
  private waiters: (() => void)[] = [];

  constructor(
    readonly name: string,
    env: NodeJS.ProcessEnv,
    readonly logFile: string,
  ) {
    this.logStream = createWriteStream(logFile, { flags: "a" });
    this.child = spawn(process.execPath, WORKER_ARGS, {
      cwd: ROOT,
      env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    const onData = (chunk: Buffer) => {
      this.logStream.write(chunk);
      this.recent = (this.recent + chunk.toString()).slice(-LOG_TAIL_CHARS);
      if (!this.isReady && this.recent.includes(READY_MESSAGE)) {
        this.isReady = true;
        this.wake();
      }
    };
    this.child.stdout!.on("data", onData);
    this.child.stderr!.on("data", onData);
    this.exited = new Promise((resolve) => {
      this.child.once("exit", (code, signal) => {
        this.status = { code, signal };
        this.wake();
        resolve(this.status);
      });
      this.child.once("error", (err) => {
        this.recent += `\n${err.message}`;
        this.status = { code: null, signal: null };
        this.wake();
        resolve(this.status);
      });
    });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /** The last few thousand characters of its output, for error messages. */
  logTail(): string {
    return this.recent;
  }

  /** Resolves once the worker reports it started; rejects if it exits first, on timeout or abort. */
  async ready(timeoutMs: number, signal?: AbortSignal): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    const timer = setTimeout(() => this.wake(), timeoutMs);
    const onAbort = () => this.wake();
    signal?.addEventListener("abort", onAbort);
    try {
      while (!this.isReady) {
        if (this.status) throw this.failure(`exited during start-up (${describe(this.status)})`);
        if (signal?.aborted) throw new LayercacheError("SHUTTING_DOWN", "interrupted");
        if (Date.now() >= deadline) throw this.failure(`not started after ${timeoutMs / 1000} s`);
        await new Promise<void>((resolve) => this.waiters.push(resolve));
      }
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
    }
  }

  /** SIGTERM, then waits for the exit (SIGKILL after `graceMs`). Safe when already exited. */
  async stop(graceMs: number): Promise<ExitStatus> {
    if (!this.status) this.child.kill("SIGTERM");
    const timer = setTimeout(() => this.child.kill("SIGKILL"), graceMs);
    try {
      return await this.exited;
    } finally {
      clearTimeout(timer);
      await new Promise<void>((resolve) => this.logStream.end(resolve));
    }
  }

  private failure(what: string): LayercacheError {
    return new LayercacheError(
      "SERVICE_UNAVAILABLE",
      `worker ${this.name} ${what}; its log (${this.logFile}) ends with:\n${this.recent.trimEnd()}`,
    );
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }
}

export function describe(s: ExitStatus): string {
  return s.signal ? `signal ${s.signal}` : `exit code ${s.code}`;
}

/**
 * Environment for a replica: the caller's, with every config variable set to
 * the resolved value of `config` (so flags given to the parent reach the
 * children), then `overrides`.
 */
export function replicaEnv(
  config: Config,
  overrides: Partial<Record<FieldKey, string>>,
  base: NodeJS.ProcessEnv = process.env,
): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...base };
  for (const [key, spec] of Object.entries(FIELDS) as [FieldKey, FieldSpec][]) {
    const value: unknown = overrides[key] ?? config[key];
    // Optional settings left unset stay unset.
    if (value === undefined || value === null) delete env[spec.env];
    else env[spec.env] = Array.isArray(value) ? value.join(",") : String(value);
  }
  return env;
}
