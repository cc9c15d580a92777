/**
 * Every setting layercache reads, in one table: its environment variable, its
 * command-line flag (derived from the key), its default and what it means.
 * `npm run docs:config` renders this table into the README.
 */
import { hostname } from "node:os";
import { z } from "zod";
import { DEFAULT_MEMORY_PER_CLASS, DEFAULT_NEIGHBOURS, HEAD_KINDS } from "../cache/head-types.ts";

export interface FieldSpec<S extends z.ZodType = z.ZodType> {
  env: string;
  doc: string;
  /** Parses the raw string (from env or flag) or the default. */
  schema: S;
  /** Default as the user would write it; undefined means "computed", see `doc`. */
  default?: string;
  /** Never log or print the value. */
  secret?: boolean;
  /** Unset unless given (no default, nothing computed): the schema accepts undefined. */
  optional?: boolean;
}

const int = (min: number, max: number) => z.coerce.number().int().min(min).max(max);
const ratio = (min: number, max: number) => z.coerce.number().min(min).max(max);
const bool = z
  .enum(["true", "false", "1", "0", "yes", "no", "on", "off"], {
    error: "expected true or false",
  })
  .transform((v) => ["true", "1", "yes", "on"].includes(v));
const list = z
  .string()
  .transform((s) => s.split(",").map((p) => p.trim()))
  .pipe(z.array(z.string().min(1, "empty entry in list")).min(1));
const topic = z
  .string()
  .regex(/^[A-Za-z0-9._-]{1,249}$/, "Kafka topic names use letters, digits, '.', '_' and '-'");
/** A TCP port to listen on, 0 for any free one, or "off". */
const listenPort = z.union([z.literal("off"), int(0, 65_535)], {
  error: 'expected a port number (0 for any free port) or "off"',
});
const optionalText = z.string().min(1).optional();

export const FIELDS = {
  kafkaBrokers: {
    env: "KAFKA_BROKERS",
    doc: "Comma-separated Kafka bootstrap servers (host:port).",
    schema: list.pipe(z.array(z.string().regex(/^[^:\s]+:\d{1,5}$/, "expected host:port"))),
    default: "127.0.0.1:9092",
  },
  kafkaClientId: {
    env: "LAYERCACHE_KAFKA_CLIENT_ID",
    doc: "Kafka client id prefix; the worker id is appended.",
    schema: z.string().min(1),
    default: "layercache",
  },
  kafkaSaslMechanism: {
    env: "LAYERCACHE_KAFKA_SASL_MECHANISM",
    doc: "SASL mechanism: none, plain, scram-sha-256 or scram-sha-512 (these need a user name and password).",
    schema: z.enum(["none", "plain", "scram-sha-256", "scram-sha-512"]),
    default: "none",
  },
  kafkaSaslUsername: {
    env: "LAYERCACHE_KAFKA_SASL_USERNAME",
    doc: "SASL user name.",
    schema: optionalText,
    optional: true,
  },
  kafkaSaslPassword: {
    env: "LAYERCACHE_KAFKA_SASL_PASSWORD",
    doc: "SASL password (masked in logs and `layercache config`).",
    schema: optionalText,
    optional: true,
    secret: true,
  },
  kafkaSsl: {
    env: "LAYERCACHE_KAFKA_SSL",
    doc: "TLS to the brokers, checking their certificates against the system CAs or the CA file.",
    schema: bool,
    default: "false",
  },
  kafkaSslCaFile: {
    env: "LAYERCACHE_KAFKA_SSL_CA_FILE",
    doc: "PEM file of the CAs that signed the brokers' certificates, instead of the system CAs.",
    schema: optionalText,
    optional: true,
  },
  kafkaSslCertFile: {
    env: "LAYERCACHE_KAFKA_SSL_CERT_FILE",
    doc: "PEM client certificate for mutual TLS (with the key file).",
    schema: optionalText,
    optional: true,
  },
  kafkaSslKeyFile: {
    env: "LAYERCACHE_KAFKA_SSL_KEY_FILE",
    doc: "PEM private key of the client certificate (unencrypted).",
    schema: optionalText,
    optional: true,
  },
  groupId: {
    env: "LAYERCACHE_GROUP_ID",
    doc: "Consumer group shared by all worker replicas.",
    schema: z.string().min(1),
    default: "layercache-workers",
  },
  framesTopic: {
    env: "LAYERCACHE_FRAMES_TOPIC",
    doc: "Input topic of Avro `Frame` records.",
    schema: topic,
    default: "layercache.frames",
  },
  predictionsTopic: {
    env: "LAYERCACHE_PREDICTIONS_TOPIC",
    doc: "Output topic of Avro `Prediction` records.",
    schema: topic,
    default: "layercache.predictions",
  },
  deadLetterTopic: {
    env: "LAYERCACHE_DEAD_LETTER_TOPIC",
    doc: "Where undecodable or invalid frames go, with the reason in headers.",
    schema: topic,
    default: "layercache.frames.dlq",
  },
  delivery: {
    env: "LAYERCACHE_DELIVERY",
    doc: "at-least-once, or exactly-once with Kafka transactions (read outputs read_committed; docs/worker.md).",
    schema: z.enum(["at-least-once", "exactly-once"]),
    default: "at-least-once",
  },
  sessionTimeoutMs: {
    env: "LAYERCACHE_SESSION_TIMEOUT_MS",
    doc: "Consumer group session timeout.",
    schema: int(6_000, 300_000),
    default: "30000",
  },
  heartbeatIntervalMs: {
    env: "LAYERCACHE_HEARTBEAT_INTERVAL_MS",
    doc: "Consumer heartbeat interval; must be at most a third of the session timeout.",
    schema: int(100, 100_000),
    default: "3000",
  },
  batchMaxFrames: {
    env: "LAYERCACHE_BATCH_MAX_FRAMES",
    doc: "Largest micro-batch of frames run through the model at once.",
    schema: int(1, 1024),
    default: "32",
  },
  batchLingerMs: {
    env: "LAYERCACHE_BATCH_LINGER_MS",
    doc: "How long a partial micro-batch waits for more frames.",
    schema: int(0, 10_000),
    default: "5",
  },
  inFlightMaxFrames: {
    env: "LAYERCACHE_IN_FLIGHT_MAX_FRAMES",
    doc: "Most frames consumed but not yet answered; when reached, fetching pauses until half have drained.",
    schema: int(1, 100_000),
    default: "512",
  },
  shutdownTimeoutMs: {
    env: "LAYERCACHE_SHUTDOWN_TIMEOUT_MS",
    doc: "How long shutdown waits for in-flight frames before committing what is done and leaving.",
    schema: int(0, 600_000),
    default: "30000",
  },
  maxMessageBytes: {
    env: "LAYERCACHE_MAX_MESSAGE_BYTES",
    doc: "Frames larger than this go to the dead-letter topic unread.",
    schema: int(1_024, 64 * 1024 * 1024),
    default: "4194304",
  },
  redisUrl: {
    env: "REDIS_URL",
    doc: "Redis holding the shared cache state (redis:// or rediss:// for TLS; credentials allowed).",
    schema: z.url({ protocol: /^rediss?$/, error: "expected redis://host:port or rediss://" }),
    default: "redis://127.0.0.1:6379",
    secret: true,
  },
  redisKeyPrefix: {
    env: "LAYERCACHE_REDIS_PREFIX",
    doc: "Prefix of every Redis key layercache writes.",
    schema: z.string().regex(/^[A-Za-z0-9._:-]{1,64}$/, "letters, digits and . _ : - only"),
    default: "layercache",
  },
  sharing: {
    env: "LAYERCACHE_SHARING",
    doc: "Share the cache through Redis (one replica trains, all adopt; docs/sharing.md); false learns alone.",
    schema: bool,
    default: "true",
  },
  leaseTtlMs: {
    env: "LAYERCACHE_LEASE_TTL_MS",
    doc: "Trainer lease time: a dead trainer is replaced within it; renewed every third of it.",
    schema: int(1_000, 300_000),
    default: "15000",
  },
  learnerThread: {
    env: "LAYERCACHE_LEARNER_THREAD",
    doc: "With sharing: train on a thread of the replica's own (its own frames' examples handed over in memory, the other replicas' through Redis) instead of on the inference thread between batches.",
    schema: bool,
    default: "true",
  },
  learnerNice: {
    env: "LAYERCACHE_LEARNER_NICE",
    doc: "Scheduling priority (nice, 0-19) of the learner thread alone, on Linux. 0 leaves it at the process's. Higher, it trains on the CPU answering leaves: one worker on 2 cores answered about a fifth faster from a cold start at 19, but where replicas keep every core busy learning starves (two on 2 cores: 0.1% of MACs saved at 19, 39.8% at 0). docs/sharing.md.",
    schema: int(0, 19),
    default: "0",
  },
  modelDir: {
    env: "LAYERCACHE_MODEL_DIR",
    doc: "Folder with the backbone's manifest.json and ONNX segments.",
    schema: z.string().min(1),
    default: "models/fashion-resnet18",
  },
  intraOpThreads: {
    env: "LAYERCACHE_INTRA_OP_THREADS",
    doc: "onnxruntime intra-op threads per session.",
    schema: int(1, 64),
    default: "1",
  },
  cacheEnabled: {
    env: "LAYERCACHE_CACHE",
    doc: "Whether exit heads may answer; false runs the whole backbone for every frame.",
    schema: bool,
    default: "true",
  },
  exactCacheEntries: {
    env: "LAYERCACHE_EXACT_CACHE_ENTRIES",
    doc: "Answers kept for repeated frames (exact cache, LRU; docs/cache.md); 0, or the cache off, turns it off.",
    schema: int(0, 1_000_000),
    default: "10000",
  },
  headKind: {
    env: "LAYERCACHE_HEAD_KIND",
    doc: "Exit head: softmax, mlp, knn (nearest-neighbour memory) or mlp+knn (both; docs/cache.md compares them).",
    schema: z.enum(HEAD_KINDS),
    default: "mlp",
  },
  knnPerClass: {
    env: "LAYERCACHE_KNN_PER_CLASS",
    doc: "knn and mlp+knn heads: newest pooled activations kept per class and exit (memory and query cost grow with it).",
    schema: int(1, 4096),
    default: String(DEFAULT_MEMORY_PER_CLASS),
  },
  knnK: {
    env: "LAYERCACHE_KNN_K",
    doc: "knn and mlp+knn heads: nearest remembered activations that vote on a frame's class.",
    schema: int(1, 256),
    default: String(DEFAULT_NEIGHBOURS),
  },
  targetAgreement: {
    env: "LAYERCACHE_TARGET_AGREEMENT",
    doc: "Share of early answers that must equal the backbone's, proven at the confidence level.",
    schema: ratio(0.5, 0.9999),
    default: "0.99",
  },
  confidenceLevel: {
    env: "LAYERCACHE_CONFIDENCE_LEVEL",
    doc: "Confidence of the one-sided lower bound used to open exits.",
    schema: ratio(0.5, 0.9999),
    default: "0.95",
  },
  auditRate: {
    env: "LAYERCACHE_AUDIT_RATE",
    doc: "Share of early-exited frames also run through the whole backbone (shadow audit).",
    schema: ratio(0, 1),
    default: "0.02",
  },
  sloP95Ms: {
    env: "LAYERCACHE_SLO_P95_MS",
    doc: "SLO mode: objective on the p95 produce-to-prediction latency, ms. Unset: fixed thresholds (docs/slo.md).",
    schema: int(1, 3_600_000).optional(),
    optional: true,
  },
  floorAgreement: {
    env: "LAYERCACHE_SLO_FLOOR_AGREEMENT",
    doc: "SLO mode: agreement floor; under overload exits move towards the thresholds proven for it, never below.",
    schema: ratio(0.5, 0.9999),
    default: "0.97",
  },
  sloPeriodMs: {
    env: "LAYERCACHE_SLO_PERIOD_MS",
    doc: "SLO mode: control period, ms.",
    schema: int(50, 60_000),
    default: "1000",
  },
  deadlineMarginMs: {
    env: "LAYERCACHE_DEADLINE_MARGIN_MS",
    doc: "A frame whose deadline hint is closer than this answers at the floor's thresholds.",
    schema: int(0, 3_600_000),
    default: "50",
  },
  metricsPort: {
    env: "LAYERCACHE_METRICS_PORT",
    doc: "Port of /metrics (Prometheus) and /healthz; 0 picks a free port (logged), off serves neither.",
    schema: listenPort,
    default: "9464",
  },
  workerId: {
    env: "LAYERCACHE_WORKER_ID",
    doc: "Name of this replica in logs, metrics and predictions (default: host name and pid).",
    schema: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, "letters, digits and . _ - only"),
  },
  logLevel: {
    env: "LOG_LEVEL",
    doc: "pino log level.",
    schema: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]),
    default: "info",
  },
} satisfies Record<string, FieldSpec>;

export type FieldKey = keyof typeof FIELDS;
export type Config = { [K in FieldKey]: z.output<(typeof FIELDS)[K]["schema"]> };

/** Defaults that depend on the running process. */
export function computedDefault(key: FieldKey): string | undefined {
  if (key === "workerId")
    return `${hostname()
      .replace(/[^A-Za-z0-9._-]/g, "-")
      .slice(0, 48)}-${process.pid}`;
  return undefined;
}

/** `kafkaBrokers` -> `--kafka-brokers`. */
export function flagName(key: string): string {
  return "--" + key.replace(/[A-Z]/g, (c) => "-" + c.toLowerCase());
}
