/**
 * pino logging: one root logger per process, a child per component
 * (`kafka`, `model`, `cache`, `state`, ...). Secrets are redacted by path so a
 * config or client options object can be logged as is.
 */
import { pino } from "pino";
import type { Logger } from "pino";

export type { Logger } from "pino";

export const REDACT_PATHS = [
  "*.password",
  "*.sasl",
  "*.ssl.key",
  "*.tls.key",
  "*.redisUrl",
  "config.redisUrl",
  "*.kafkaSaslPassword",
  "config.kafkaSaslPassword",
  "password",
];

export interface LoggerOptions {
  level: string;
  workerId: string;
  /** Where to write; defaults to stdout. Tests pass a stream to inspect. */
  destination?: pino.DestinationStream;
}

export function createLogger(options: LoggerOptions): Logger {
  return pino(
    {
      level: options.level,
      base: { service: "layercache", workerId: options.workerId },
      redact: { paths: REDACT_PATHS, censor: "[redacted]" },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    options.destination ?? pino.destination({ sync: false }),
  );
}

export function componentLogger(root: Logger, component: string): Logger {
  return root.child({ component });
}
