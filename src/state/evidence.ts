/**
 * The trainer's calibration evidence, kept in Redis so that a trainer that
 * takes over does not start from nothing (docs/sharing.md, "Handing over the
 * evidence").
 *
 * Every held-out frame the trainer calibrates on, its own or forwarded by
 * another replica, is also appended to a capped stream of its own
 * (`<prefix>:{<modelId>}:evidence`, the example codec, kind "held-out"),
 * written by the trainer alone, so each frame is there once. A replica that
 * takes the trainer lease over reads the whole stream (XRANGE, in chunks)
 * into its calibration set before it decides anything. A drift alarm, which
 * drops the trainer's calibration set, deletes the stream too: evidence from
 * before a drift must not prove exits after it.
 *
 * Redis trouble never stops training: appending buffers and drops as the
 * example stream does, reading gives what it could, and a failed delete is
 * logged (the next alarm or the cap clears what is left).
 */
import { softmaxWithTemperature } from "../cache/heads.ts";
import type { EvidenceSink } from "../cache/trainer.ts";
import { isLayercacheError } from "../errors/index.ts";
import type { Logger } from "../telemetry/logger.ts";
import type { RawEntry } from "./example-consumer.ts";
import { decodeEntry } from "./example-consumer.ts";
import type { TrainingExample } from "./example-codec.ts";
import { ExampleStream } from "./examples.ts";
import type { StateLayout } from "./layout.ts";
import type { StateConnection } from "./redis-connection.ts";

/** Entries per XRANGE call when reading the stream back. */
const READ_CHUNK = 256;

export interface EvidenceLogOptions {
  connection: StateConnection;
  prefix: string;
  modelId: string;
  layout: StateLayout;
  /** Recorded with each entry (the worker id). */
  producerId: string;
  /** Approximate cap, in held-out frames (about 20 KB each for the bundled model). */
  maxLength: number;
  /** The cache temperature: entries carry the backbone's softmax at it, as forwarded examples do. */
  temperature: number;
}

export interface EvidenceRead {
  examples: TrainingExample[];
  /** Entries that were not held-out examples of this model (skipped). */
  invalid: number;
}

export class EvidenceLog implements EvidenceSink {
  private readonly stream: ExampleStream;
  private readonly target: Float32Array;
  private readonly log: Logger;

  constructor(private readonly options: EvidenceLogOptions) {
    this.stream = new ExampleStream({ ...options, stream: "evidence", bufferCapacity: 1024 });
    this.target = new Float32Array(options.layout.classes);
    this.log = options.connection.log.child({ model: options.modelId, stream: "evidence" });
  }

  /** A held-out frame the trainer took into its calibration set. */
  add(features: readonly Float32Array[], logits: Float32Array): void {
    softmaxWithTemperature(logits, this.options.temperature, this.target);
    this.stream.offer({ kind: "held-out", features, target: this.target });
  }

  /** After a drift alarm: forgets what is buffered and deletes the stream. */
  clear(): void {
    this.stream.discard();
    this.options.connection
      .run("delete the calibration evidence", (c) => c.del(this.stream.key))
      .catch((err: unknown) =>
        this.log.warn({ err: String(err) }, "could not delete the calibration evidence after a drift alarm"),
      );
  }

  /**
   * Every held-out frame in the stream, oldest first (what is still buffered
   * is sent first). Throws SERVICE_UNAVAILABLE when Redis does not answer.
   */
  async readAll(): Promise<EvidenceRead> {
    await this.stream.flush();
    const examples: TrainingExample[] = [];
    let invalid = 0;
    let start = "-";
    for (;;) {
      const reply = await this.options.connection.run("read the calibration evidence", (c) =>
        c.xrangeBuffer(this.stream.key, start, "+", "COUNT", READ_CHUNK),
      );
      for (const [id, fields] of reply) {
        const entry: RawEntry = { id: id.toString(), fields };
        try {
          const example = decodeEntry(entry, this.options.layout);
          if (example.kind === "held-out") examples.push(example);
          else invalid++;
        } catch (err) {
          if (!isLayercacheError(err, "STATE_INVALID")) throw err;
          invalid++;
        }
      }
      if (reply.length < READ_CHUNK) break;
      start = `(${reply[reply.length - 1]![0].toString()}`;
    }
    if (invalid > 0) this.log.warn({ invalid }, "skipped calibration evidence that is not this model's");
    return { examples, invalid };
  }

  /** Sends what is buffered, then stops. */
  close(): Promise<void> {
    return this.stream.close();
  }
}
