/**
 * The kafkajs client, built from the typed config, with kafkajs's own log
 * lines routed into pino (component "kafka").
 *
 * SASL and TLS are not configurable yet: the client speaks PLAINTEXT.
 */
import { Kafka, logLevel } from "kafkajs";
import type { LogEntry, logCreator } from "kafkajs";
import type { Config } from "../../config/index.ts";
import type { Logger } from "../../telemetry/logger.ts";

export type KafkaClientConfig = Pick<Config, "kafkaBrokers" | "kafkaClientId" | "workerId">;

export function createKafka(config: KafkaClientConfig, log: Logger): Kafka {
  return new Kafka({
    clientId: `${config.kafkaClientId}-${config.workerId}`,
    brokers: config.kafkaBrokers,
    logLevel: kafkajsLevel(log.level),
    logCreator: pinoLogCreator(log),
  });
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
      // Error answers from the broker (a rebalance under way, a leader moving) are logged by the
      // connection at ERROR and then handled by the caller, which reports what really fails.
      const handled = namespace === "Connection" && message.startsWith("Response ");
      if (level === logLevel.ERROR && !handled) log.error(fields, message);
      else if (level === logLevel.ERROR) log.info(fields, message);
      else if (level === logLevel.WARN) log.warn(fields, message);
      else if (level === logLevel.INFO) log.debug(fields, message);
      else log.trace(fields, message);
    };
}
