/**
 * Exactly-once transactions against the real broker, without a consumer: two
 * members that both believe they own partition 0 of the frames topic. The
 * second takes the partition's transactional id over, which fences the
 * first; it re-reads the committed offset and drops the outputs of messages
 * the first already committed; the first's later transaction is refused. A
 * read_committed reader sees every output exactly once, and the group's
 * offset is where the second left it.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Admin, Kafka } from "kafkajs";
import type { ConsumedMessage } from "../../src/transport/kafka/consumer.ts";
import { OffsetLedger } from "../../src/transport/kafka/offsets.ts";
import type { TransactionResult } from "../../src/transport/kafka/transactions.ts";
import { TransactionalOutputs, transactionalIdFor } from "../../src/transport/kafka/transactions.ts";
import { createLogger } from "../../src/telemetry/logger.ts";
import { TopicCollector } from "../pipeline/helpers.ts";
import { createTopics, testKafka, uniqueName } from "../helpers/services.ts";

const log = createLogger({ level: "silent", workerId: "test" });

/** A member as the worker has it: a ledger of partition 0 and transactional outputs for it. */
function member(kafka: Kafka, names: { frames: string; group: string }) {
  const ledger = new OffsetLedger();
  const results: TransactionResult[] = [];
  const fatal: Error[] = [];
  const outputs = new TransactionalOutputs(
    kafka,
    {
      groupId: names.group,
      topic: names.frames,
      // Long enough that a fenced member does not come back within the test.
      sessionTimeoutMs: 60_000,
      requestCommit: () => undefined,
      onFatal: (err) => fatal.push(err),
      onTransaction: (r) => results.push(r),
    },
    log,
  );
  /** Hands out offsets [from, to) and stages one output each; returns how each output settled. */
  const handle = (from: number, to: number, topic: string): Promise<PromiseSettledResult<void>[]> => {
    const tracker = ledger.tracker(names.frames, 0);
    const written = [];
    for (let o = from; o < to; o++) {
      const entry = tracker.add(String(o));
      const source: ConsumedMessage = {
        topic: names.frames,
        partition: 0,
        offset: String(o),
        key: null,
        value: null,
        headers: {},
        receivedAt: Date.now(),
        entry,
      };
      written.push(
        ...outputs.write(topic, [{ source, message: { key: `frame-${o}`, value: `answer ${o}` } }]),
      );
    }
    return Promise.allSettled(written);
  };
  const commit = async () => {
    const committed = await outputs.commit(ledger.committable(), ledger);
    ledger.markCommitted(committed);
    return committed;
  };
  return { ledger, outputs, results, fatal, handle, commit };
}

describe("TransactionalOutputs (real broker)", () => {
  const kafka = testKafka();
  let admin: Admin;
  let drop: () => Promise<void>;
  const names = {
    frames: uniqueName("txn-frames"),
    outputs: uniqueName("txn-outputs"),
    group: uniqueName("txn"),
  };

  beforeAll(async () => {
    admin = kafka.admin();
    await admin.connect();
    drop = await createTopics(admin, [names.frames, names.outputs], 1);
  });
  afterAll(async () => {
    await admin.deleteGroups([names.group]).catch(() => undefined);
    await drop();
    await admin.disconnect();
  });

  it("derives one transactional id per input partition, the same on every replica", () => {
    expect(transactionalIdFor("g", "frames", 3)).toBe("layercache.g.frames.3");
  });

  it("fences the previous owner of a partition and never writes an output twice", async () => {
    const first = member(kafka, names);
    const second = member(kafka, names);
    try {
      // The first member answers offsets 0-9 and commits them with their outputs.
      const firstAnswers = first.handle(0, 10, names.outputs);
      expect(await first.commit()).toEqual([{ topic: names.frames, partition: 0, offset: "10" }]);
      expect((await firstAnswers).map((r) => r.status)).toEqual(Array(10).fill("fulfilled"));

      // The second fetched the offset before that commit landed (from 5) and answers 5-14. Taking the
      // id over, it sees 10 committed: 5-9 are dropped, 10-14 committed.
      const secondAnswers = second.handle(5, 15, names.outputs);
      expect(await second.commit()).toEqual([{ topic: names.frames, partition: 0, offset: "15" }]);
      const settled = await secondAnswers;
      expect(settled.slice(0, 5).map((r) => r.status)).toEqual(Array(5).fill("rejected"));
      expect(settled.slice(0, 5).map((r) => (r as PromiseRejectedResult).reason.code)).toEqual(
        Array(5).fill("SUPERSEDED"),
      );
      expect(settled.slice(5).map((r) => r.status)).toEqual(Array(5).fill("fulfilled"));

      // The first, a zombie now, answers 10-12 again: its transaction is refused.
      void first.handle(10, 13, names.outputs);
      expect(await first.commit()).toEqual([]);
      expect(first.results).toEqual(["committed", "fenced"]);
      expect(second.results).toEqual(["committed"]);
      expect(first.fatal).toEqual([]);

      const [offsets] = await admin.fetchOffsets({ groupId: names.group, topics: [names.frames] });
      expect(offsets?.partitions).toEqual([expect.objectContaining({ partition: 0, offset: "15" })]);
    } finally {
      await first.outputs.close();
      await second.outputs.close();
    }

    const reader = await new TopicCollector(kafka, names.outputs).start();
    try {
      await reader.caughtUp(admin);
      expect(reader.messages.map((m) => String(m.key))).toEqual(
        Array.from({ length: 15 }, (_, o) => `frame-${o}`),
      );
    } finally {
      await reader.stop();
    }
  }, 120_000);
});
