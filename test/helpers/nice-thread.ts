/**
 * Worker-thread entry for test/pipeline/thread-priority.test.ts: sets this
 * thread's nice value as asked and reports what the thread and the process
 * run at afterwards.
 */
import { getPriority } from "node:os";
import { parentPort, workerData } from "node:worker_threads";
import { setThreadNice } from "../../src/pipeline/thread-priority.ts";

const asked = workerData as number[];
const outcomes = asked.map((nice) => setThreadNice(nice));
parentPort!.postMessage({ outcomes, processNice: getPriority(process.pid) });
