/**
 * The pino logger of the client-side commands (produce, tail, demo): the
 * usual root and component loggers, written to stderr so that stdout carries
 * only the command's results (a final line, a summary table, JSON).
 */
import { pino } from "pino";
import type { Config } from "../config/index.ts";
import type { Logger } from "../telemetry/logger.ts";
import { componentLogger, createLogger } from "../telemetry/logger.ts";

export function toolLogger(config: Config, component: string): Logger {
  const root = createLogger({
    level: config.logLevel,
    workerId: config.workerId,
    destination: pino.destination({ dest: 2, sync: true }),
  });
  return componentLogger(root, component);
}
