/**
 * What every benchmark through the real broker (bench:kafka, bench:sharing,
 * bench:slo) runs inside: the configured broker and Redis, starting the
 * project's own when they do not answer; the arms' shared context; Ctrl-C
 * (exit code 130, after cleaning up); teardown of whatever was started, in
 * reverse order; and the wall time at the end.
 */
import { catchInterrupts } from "../../src/cli/interrupt.ts";
import { toolLogger } from "../../src/cli/tool-logger.ts";
import type { Config } from "../../src/config/index.ts";
import { loadConfig } from "../../src/config/index.ts";
import { FASHION_MNIST, openFrameSource } from "../../src/tools/frame-source.ts";
import { ensureKafka, ensureRedis } from "../../src/tools/local-services.ts";
import { createKafka } from "../../src/transport/kafka/client.ts";
import type { BenchContext } from "../kafka/arm.ts";
import { Teardown } from "../kafka/teardown.ts";

export interface KafkaBenchOptions {
  say: (line: string) => void;
  /** No progress bars (the report goes to stdout as JSON). */
  json: boolean;
  /** Adjusts the configuration the arms get (bench:sharing forces sharing on). */
  config?: (config: Config) => Config;
}

/** Runs `body` with the services up; resolves the process exit code. */
export async function runKafkaBench(
  options: KafkaBenchOptions,
  body: (ctx: BenchContext) => Promise<number>,
): Promise<number> {
  const { say } = options;
  const config = loadConfig(process.env);
  // kafkajs chatter only when asked for with LOG_LEVEL.
  const log = toolLogger({ ...config, logLevel: process.env.LOG_LEVEL ? config.logLevel : "warn" }, "bench");
  const interrupt = catchInterrupts(log);
  const teardown = new Teardown(say);
  const t0 = performance.now();
  try {
    const kafkaService = await ensureKafka(config.kafkaBrokers, say);
    teardown.push("stop the Kafka broker", () => kafkaService.stop());
    const redis = await ensureRedis(config.redisUrl, say);
    teardown.push("stop redis-server", () => redis.stop());
    return await body({
      config: options.config ? options.config(config) : config,
      kafka: createKafka({ ...config, kafkaBrokers: kafkaService.address.split(",") }, log),
      brokers: kafkaService.address,
      redisUrl: redis.address,
      source: await openFrameSource(FASHION_MNIST),
      log,
      say,
      signal: interrupt.signal,
      showProgress: !options.json && process.stderr.isTTY === true,
      cleanup: (what, run) => teardown.push(what, run),
    });
  } catch (err) {
    if (interrupt.signal.aborted) return 130;
    say(`failed: ${err instanceof Error ? err.message : String(err)}`);
    return 1;
  } finally {
    if (interrupt.signal.aborted) say("interrupted: cleaning up");
    await teardown.run();
    interrupt.dispose();
    say(`wall time ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  }
}
