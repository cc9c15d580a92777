/**
 * The topics of one run of a tool (the demo, bench:kafka): created fresh with
 * the frames spread over several partitions, and dropped with the run's
 * consumer group at the end.
 */
import { setTimeout as sleep } from "node:timers/promises";
import type { Admin } from "kafkajs";

/** Partitions of a run's frames and predictions topics: room for several replicas. */
export const FRAMES_PARTITIONS = 4;

export interface RunTopics {
  frames: string;
  predictions: string;
  deadLetters: string;
}

export async function createRunTopics(admin: Admin, topics: RunTopics): Promise<void> {
  await createTopicsReady(admin, [
    { topic: topics.frames, numPartitions: FRAMES_PARTITIONS },
    { topic: topics.predictions, numPartitions: FRAMES_PARTITIONS },
    { topic: topics.deadLetters, numPartitions: 1 },
  ]);
}

/** How long new topics may take to get a leader for every partition. */
const READY_TIMEOUT_MS = 60_000;

/**
 * Creates topics and returns once every partition has a leader. kafkajs's
 * own wait (`waitForLeaders`) gives up with "This server does not host this
 * topic-partition" when a busy broker is slow to publish the new metadata;
 * this keeps asking until the deadline instead.
 */
export async function createTopicsReady(
  admin: Admin,
  topics: { topic: string; numPartitions: number }[],
  timeoutMs = READY_TIMEOUT_MS,
): Promise<void> {
  try {
    await admin.createTopics({
      topics: topics.map((t) => ({ ...t, replicationFactor: 1 })),
      waitForLeaders: true,
    });
  } catch (err) {
    // Created, but the leaders were not known in time: wait below.
    if (!isUnknownPartition(err)) throw err;
  }
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const { topics: found } = await admin.fetchTopicMetadata({ topics: topics.map((t) => t.topic) });
      const ready = topics.every((t) => {
        const meta = found.find((f) => f.name === t.topic);
        return meta?.partitions.length === t.numPartitions && meta.partitions.every((p) => p.leader >= 0);
      });
      if (ready) return;
    } catch (err) {
      if (!isUnknownPartition(err)) throw err;
    }
    if (Date.now() > deadline) {
      throw new Error(`topics ${topics.map((t) => t.topic).join(", ")} have no leaders after ${timeoutMs} ms`);
    }
    await sleep(200);
  }
}

function isUnknownPartition(err: unknown): boolean {
  return (err as { type?: string } | null)?.type === "UNKNOWN_TOPIC_OR_PARTITION";
}

/** Deletes the run's topics and consumer group. */
export async function dropRun(admin: Admin, topics: RunTopics, group: string): Promise<void> {
  // A group that never committed may not exist; the topics matter more.
  await admin.deleteGroups([group]).catch(() => undefined);
  await admin.deleteTopics({ topics: Object.values(topics), timeout: 10_000 });
}
