/**
 * Starts a worker thread whose entry is a TypeScript module, and closes one within a grace time.
 *
 * The main thread runs TypeScript through tsx, but a worker thread starts
 * with plain Node module loading, and on Node 20 `execArgv: ["--import",
 * "tsx"]` does not reach the worker's entry module (it fails with
 * ERR_UNKNOWN_FILE_EXTENSION). So the thread starts from a two-line
 * bootstrap that registers tsx's loader itself, then imports the entry. This
 * works the same under vitest and under `node bin/layercache.js`, whatever
 * the working directory, since tsx is resolved from this file.
 */
import { Worker } from "node:worker_threads";
import type { WorkerOptions } from "node:worker_threads";

export function startTsWorker(entry: URL, options: WorkerOptions = {}): Worker {
  const tsxApi = import.meta.resolve("tsx/esm/api");
  const bootstrap =
    `import(${JSON.stringify(tsxApi)})` +
    `.then((tsx) => { tsx.register(); return import(${JSON.stringify(entry.href)}); });`;
  return new Worker(bootstrap, { ...options, eval: true });
}

/**
 * Asks a thread to close with `message` and waits for `exited`; if that takes
 * longer than `graceMs`, calls `onOverdue` and terminates the thread.
 */
export async function closeWithin(
  worker: Worker,
  exited: Promise<void>,
  message: unknown,
  graceMs: number,
  onOverdue: () => void,
): Promise<void> {
  worker.postMessage(message);
  const timer = setTimeout(() => {
    onOverdue();
    void worker.terminate();
  }, graceMs);
  await exited;
  clearTimeout(timer);
}
