/**
 * The topics of one run of a tool (the demo, bench:kafka): created fresh with
 * the frames spread over several partitions, and dropped with the run's
 * consumer group at the end.
 */
import type { Admin } from "kafkajs";

/** Partitions of a run's frames and predictions topics: room for several replicas. */
export const FRAMES_PARTITIONS = 4;

export interface RunTopics {
  frames: string;
  predictions: string;
  deadLetters: string;
}

export async function createRunTopics(admin: Admin, topics: RunTopics): Promise<void> {
  await admin.createTopics({
    topics: [
      { topic: topics.frames, numPartitions: FRAMES_PARTITIONS, replicationFactor: 1 },
      { topic: topics.predictions, numPartitions: FRAMES_PARTITIONS, replicationFactor: 1 },
      { topic: topics.deadLetters, numPartitions: 1, replicationFactor: 1 },
    ],
    waitForLeaders: true,
  });
}

/** Deletes the run's topics and consumer group. */
export async function dropRun(admin: Admin, topics: RunTopics, group: string): Promise<void> {
  // A group that never committed may not exist; the topics matter more.
  await admin.deleteGroups([group]).catch(() => undefined);
  await admin.deleteTopics({ topics: Object.values(topics), timeout: 10_000 });
}
