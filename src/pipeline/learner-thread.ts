/**
 * The learner thread: the replica's part in training the fleet's cache, on a
 * thread of its own (docs/sharing.md, "The learner thread").
 *
 * It campaigns for the trainer lease and, while it holds it, takes every
 * example and audit verdict the other replicas send through Redis and those
 * its own inference thread hands over through this thread's port
 * (learner-feed.ts; without the lease it sends those on through Redis),
 * trains, calibrates and publishes. The inference thread only answers
 * frames, hands over, and adopts what is published, so learning never holds
 * a batch up: on a machine with a core to spare it runs beside the
 * answering, not between batches. With `learnerNice` it runs at a lower
 * scheduling priority (thread-priority.ts), so that answering comes first
 * and training takes the CPU left over.
 *
 * Started and closed by the inference thread (learner-client.ts), which
 * passes its status on to the main thread with its own.
 */
import { parentPort, workerData } from "node:worker_threads";
import type { MessagePort } from "node:worker_threads";
import { setTimeout as sleep } from "node:timers/promises";
import { SegmentedBackbone } from "../model/backbone.ts";
import { componentLogger, createLogger } from "../telemetry/logger.ts";
import type { Logger } from "../telemetry/logger.ts";
import { CacheSharing } from "./cache-sharing.ts";
import { toWireError } from "./inference-protocol.ts";
import type { FromLearner, LearnerInit, ToLearner } from "./learner-client.ts";
import { learnerStatus } from "./learner-client.ts";
import { LocalIntake } from "./learner-feed.ts";
import { osThreadId, setThreadNice } from "./thread-priority.ts";

/** How often a learner without the lease runs the sharing step (adopt, and take the lease once free). */
const FOLLOW_STEP_MS = 250;
/** How long a trainer with nothing to do waits before it reads the stream again. */
const IDLE_STEP_MS = 20;

async function run(port: MessagePort, init: LearnerInit, log: Logger): Promise<void> {
  // The thread's id names it in `top -H` and /proc (bench:kafka's CPU rows read it).
  log.info({ tid: osThreadId() }, "learner thread started");
  if (init.sharing.learnerNice > 0) {
    const priority = setThreadNice(init.sharing.learnerNice);
    if (priority.applied)
      log.info({ nice: priority.nice }, "learner thread runs at a lower priority than answering");
    else log.warn({ reason: priority.reason }, "learner thread runs at the process's priority");
  }
  const post = (m: FromLearner) => port.postMessage(m);
  let closing = false;
  const stop = new AbortController();
  const intake = new LocalIntake();
  port.on("message", (m: ToLearner) => {
    if (m.type === "examples") {
      intake.add(m.entries);
      return;
    }
    closing = true;
    stop.abort();
  });

  let backbone: SegmentedBackbone;
  let sharing: CacheSharing;
  try {
    // Only the manifest and the layout matter here: no frame runs, so no session of the model at all.
    backbone = await SegmentedBackbone.load(init.modelDir, {
      intraOpThreads: 1,
      loadFull: false,
      loadSegments: false,
    });
    sharing = await CacheSharing.start({
      backbone,
      options: init.cache,
      init: init.sharing,
      workerId: init.workerId,
      log,
      part: "trains",
      intake,
    });
  } catch (err) {
    log.error({ err }, "learner thread failed to start");
    post({ type: "fatal", error: toWireError(err) });
    post({ type: "closed" });
    port.close();
    return;
  }
  post({ type: "ready" });

  let sent = "";
  while (!closing) {
    try {
      await sharing.maintain();
    } catch (err) {
      log.error({ err }, "learning failed");
      post({ type: "fatal", error: toWireError(err) });
      break;
    }
    const status = learnerStatus(sharing.status());
    const text = JSON.stringify(status);
    if (text !== sent) {
      sent = text;
      post({ type: "status", status });
    }
    const wait = !status.training ? FOLLOW_STEP_MS : sharing.idle ? IDLE_STEP_MS : 0;
    // Even with work waiting, yield to the event loop: a close message must get through.
    await sleep(wait, undefined, { signal: stop.signal }).catch(() => undefined);
  }

  try {
    await sharing.close();
    await sharing.cache.close();
  } catch (err) {
    log.warn({ err }, "could not close the learner's shared state cleanly");
  }
  await backbone.close();
  const { active, utilization } = performance.eventLoopUtilization();
  const stats = sharing.cache.role === "follower" ? undefined : sharing.cache.trainer.stats;
  log.info(
    {
      busyS: Math.round(active) / 1000,
      utilization: Math.round(1000 * utilization) / 1000,
      ...(stats
        ? {
            steps: stats.steps,
            trainS: Math.round(stats.trainMs) / 1000,
            examples: stats.examples,
            rejected: stats.rejected,
          }
        : {}),
    },
    "learner thread closed",
  );
  log.flush();
  post({ type: "closed" });
  port.close();
}

if (!parentPort) throw new Error("learner-thread.ts runs as a worker thread (see learner-client.ts)");
const init = workerData as LearnerInit;
const root = createLogger({ level: init.logLevel, workerId: init.workerId });
await run(parentPort, init, componentLogger(root, "learner"));
