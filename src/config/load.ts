/**
 * Parses the one typed config at start-up. Precedence: command-line flag, then
 * environment variable, then default. Fails fast with every bad field named.
 */
import { LayercacheError } from "../errors/index.ts";
import type { Config, FieldKey, FieldSpec } from "./fields.ts";
import { FIELDS, computedDefault, flagName } from "./fields.ts";

export type RawFlags = Partial<Record<FieldKey, string>>;

const KNOWN_ENV = new Set(Object.values(FIELDS).map((f: FieldSpec) => f.env));
/** Environment variables under our prefix that the worker itself sets for tooling. */
const TOOLING_ENV = new Set([
  "LAYERCACHE_KAFKA_HOME",
  "LAYERCACHE_KAFKA_PORT",
  "LAYERCACHE_KAFKA_CONTROLLER_PORT",
  "LAYERCACHE_KAFKA_HEAP",
  "LAYERCACHE_KAFKA_START_TIMEOUT",
]);

export function isKnownEnv(name: string): boolean {
  return KNOWN_ENV.has(name) || TOOLING_ENV.has(name);
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env, flags: RawFlags = {}): Config {
  const problems: string[] = [];

  // A misspelt LAYERCACHE_ variable would otherwise be silently ignored.
  for (const name of Object.keys(env)) {
    if (name.startsWith("LAYERCACHE_") && !isKnownEnv(name)) {
      problems.push(`${name}: unknown setting`);
    }
  }

  const out: Record<string, unknown> = {};
  for (const [key, spec] of Object.entries(FIELDS) as [FieldKey, FieldSpec][]) {
    const fromFlag = flags[key];
    const fromEnv = env[spec.env];
    const raw = fromFlag ?? (fromEnv === "" ? undefined : fromEnv) ?? spec.default ?? computedDefault(key);
    const source = fromFlag !== undefined ? flagName(key) : fromEnv ? spec.env : `default of ${spec.env}`;
    const parsed = spec.schema.safeParse(raw);
    if (parsed.success) {
      out[key] = parsed.data;
    } else {
      const shown = spec.secret ? "(hidden)" : JSON.stringify(raw);
      const why = parsed.error.issues.map((i) => i.message).join("; ");
      problems.push(`${source}: ${why} (got ${shown})`);
    }
  }

  if (problems.length === 0) problems.push(...crossFieldProblems(out as Config));
  if (problems.length > 0) {
    throw new LayercacheError("CONFIG_INVALID", `invalid configuration:\n  - ${problems.join("\n  - ")}`, {
      details: { problems: problems.length },
    });
  }
  return out as Config;
}

function crossFieldProblems(c: Config): string[] {
  const problems: string[] = [];
  if (c.heartbeatIntervalMs * 3 > c.sessionTimeoutMs) {
    problems.push(
      `${FIELDS.heartbeatIntervalMs.env} (${c.heartbeatIntervalMs}) must be at most a third of ` +
        `${FIELDS.sessionTimeoutMs.env} (${c.sessionTimeoutMs})`,
    );
  }
  const topics = [c.framesTopic, c.predictionsTopic, c.deadLetterTopic];
  if (new Set(topics).size !== topics.length) {
    problems.push(
      `${FIELDS.framesTopic.env}, ${FIELDS.predictionsTopic.env} and ${FIELDS.deadLetterTopic.env} must differ`,
    );
  }
  if (c.batchLingerMs * 2 > c.sessionTimeoutMs) {
    problems.push(`${FIELDS.batchLingerMs.env} must be well below ${FIELDS.sessionTimeoutMs.env}`);
  }
  problems.push(...kafkaSecurityProblems(c));
  if (c.inFlightMaxFrames < c.batchMaxFrames) {
    problems.push(
      `${FIELDS.inFlightMaxFrames.env} (${c.inFlightMaxFrames}) must be at least ` +
        `${FIELDS.batchMaxFrames.env} (${c.batchMaxFrames}), or micro-batches could never fill`,
    );
  }
  return problems;
}

/** SASL needs both credentials and a mechanism; TLS files need TLS on, and a certificate its key. */
function kafkaSecurityProblems(c: Config): string[] {
  const problems: string[] = [];
  const credentials = [c.kafkaSaslUsername, c.kafkaSaslPassword].filter((v) => v !== undefined).length;
  if (c.kafkaSaslMechanism !== "none" && credentials < 2) {
    problems.push(
      `${FIELDS.kafkaSaslMechanism.env}=${c.kafkaSaslMechanism} needs ${FIELDS.kafkaSaslUsername.env} and ` +
        `${FIELDS.kafkaSaslPassword.env}`,
    );
  }
  if (c.kafkaSaslMechanism === "none" && credentials > 0) {
    problems.push(`SASL credentials are set but ${FIELDS.kafkaSaslMechanism.env} is none`);
  }
  const files = (["kafkaSslCaFile", "kafkaSslCertFile", "kafkaSslKeyFile"] as const).filter(
    (k) => c[k] !== undefined,
  );
  if (!c.kafkaSsl && files.length > 0) {
    problems.push(`${files.map((k) => FIELDS[k].env).join(", ")} set but ${FIELDS.kafkaSsl.env} is false`);
  }
  if ((c.kafkaSslCertFile === undefined) !== (c.kafkaSslKeyFile === undefined)) {
    problems.push(`${FIELDS.kafkaSslCertFile.env} and ${FIELDS.kafkaSslKeyFile.env} go together`);
  }
  return problems;
}

/** The config with secrets masked, for logs. */
export function redactConfig(c: Config): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, spec] of Object.entries(FIELDS) as [FieldKey, FieldSpec][]) {
    const value = c[key];
    out[key] = spec.secret && value !== undefined ? redactUrl(String(value)) : value;
  }
  return out;
}

function redactUrl(value: string): string {
  try {
    const u = new URL(value);
    if (u.password) u.password = "***";
    if (u.username) u.username = "***";
    return u.toString();
  } catch {
    return "***";
  }
}
