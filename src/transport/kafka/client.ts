/**
 * The kafkajs client, built from the typed config, with kafkajs's own log
 * lines routed into pino (component "kafka"). SASL (plain, SCRAM) and TLS
 * come from the config; PEM files are read when the client is made.
 */
import { readFileSync } from "node:fs";
import { Kafka, logLevel } from "kafkajs";
import type { LogEntry, SASLOptions, logCreator } from "kafkajs";
import type { ConnectionOptions } from "node:tls";
import type { Config } from "../../config/index.ts";
import { FIELDS } from "../../config/index.ts";
import { LayercacheError } from "../../errors/index.ts";
import type { Logger } from "../../telemetry/logger.ts";

export type KafkaClientConfig = Pick<
  Config,
  | "kafkaBrokers"
  | "kafkaClientId"
  | "workerId"
  | "kafkaSaslMechanism"
  | "kafkaSaslUsername"
  | "kafkaSaslPassword"
  | "kafkaSsl"
  | "kafkaSslCaFile"
  | "kafkaSslCertFile"
  | "kafkaSslKeyFile"
>;

export function createKafka(config: KafkaClientConfig, log: Logger): Kafka {
  const ssl = tlsOptions(config);
  const sasl = saslOptions(config);
  return new Kafka({
    clientId: `${config.kafkaClientId}-${config.workerId}`,
    brokers: config.kafkaBrokers,
    ...(ssl === undefined ? {} : { ssl }),
    ...(sasl === undefined ? {} : { sasl }),
    logLevel: kafkajsLevel(log.level),
    logCreator: pinoLogCreator(log),
  });
}

/** kafkajs `sasl` options; undefined without SASL. (loadConfig made sure both credentials are there.) */
export function saslOptions(config: KafkaClientConfig): SASLOptions | undefined {
  const { kafkaSaslMechanism: mechanism, kafkaSaslUsername: username, kafkaSaslPassword: password } = config;
  if (mechanism === "none") return undefined;
  if (username === undefined || password === undefined) {
    throw new LayercacheError("CONFIG_INVALID", `SASL ${mechanism} needs a user name and a password`);
  }
  return { mechanism, username, password };
}

/** kafkajs `ssl` options: false-y without TLS, `true` for the system CAs, else the PEM files. */
export function tlsOptions(config: KafkaClientConfig): ConnectionOptions | true | undefined {
  if (!config.kafkaSsl) return undefined;
  const files = {
    ca: config.kafkaSslCaFile === undefined ? undefined : readPem("kafkaSslCaFile", config.kafkaSslCaFile),
    cert:
      config.kafkaSslCertFile === undefined
        ? undefined
        : readPem("kafkaSslCertFile", config.kafkaSslCertFile),
    key:
      config.kafkaSslKeyFile === undefined ? undefined : readPem("kafkaSslKeyFile", config.kafkaSslKeyFile),
  };
  const given = Object.fromEntries(Object.entries(files).filter(([, v]) => v !== undefined));
  return Object.keys(given).length === 0 ? true : { ...given, rejectUnauthorized: true };
}

function readPem(key: "kafkaSslCaFile" | "kafkaSslCertFile" | "kafkaSslKeyFile", path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch (err) {
    throw new LayercacheError("CONFIG_INVALID", `${FIELDS[key].env}: cannot read ${path}`, { cause: err });
  }
}

/**
 * kafkajs logs every pause, resume, join and fetch-manager restart at INFO,
 * which under backpressure is several lines a second: its INFO becomes our
 * debug, and its DEBUG (protocol chatter) only shows at trace.
 */
function kafkajsLevel(pinoLevel: string): logLevel {
  switch (pinoLevel) {
    case "trace":
      return logLevel.DEBUG;
    case "debug":
      return logLevel.INFO;
    case "info":
    case "warn":
      return logLevel.WARN;
    case "silent":
      return logLevel.NOTHING;
    default:
      return logLevel.ERROR;
  }
}

function pinoLogCreator(log: Logger): logCreator {
  return () =>
    ({ namespace, level, log: entry }: LogEntry) => {
      // kafkajs puts its own timestamp and logger name in every entry; pino has both.
      const { message, timestamp: _t, logger: _l, ...extra } = entry;
      const fields = { kafkajs: namespace, ...extra };
      // Error answers from the broker (a rebalance under way, a leader moving, the previous
      // transaction still completing) are logged at ERROR by the connection, and by the producer
      // before each retry, then handled by the caller, which reports what really fails.
      const handled =
        (namespace === "Connection" && message.startsWith("Response ")) ||
        (namespace === "Producer" && "retryCount" in extra);
      if (level === logLevel.ERROR && !handled) log.error(fields, message);
      else if (level === logLevel.ERROR) log.info(fields, message);
      else if (level === logLevel.WARN) log.warn(fields, message);
      else if (level === logLevel.INFO) log.debug(fields, message);
      else log.trace(fields, message);
    };
}
