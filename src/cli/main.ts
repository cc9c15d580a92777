/**
 * The `layercache` command line. Every command takes the config flags listed
 * in the README (each also settable by its environment variable).
 */
import { Command, Option } from "commander";
import { FIELDS, flagName, loadConfig, redactConfig } from "../config/index.ts";
import type { Config, FieldKey, RawFlags } from "../config/index.ts";
import { isLayercacheError } from "../errors/index.ts";
import { addDemoOptions, runDemo } from "./demo.ts";
import { inspectModel } from "./inspect.ts";
import { addProduceOptions, runProduce } from "./produce.ts";
import { addTailOptions, runTail } from "./tail.ts";
import { runWorker } from "./worker.ts";

function withConfigFlags(cmd: Command): Command {
  for (const [key, spec] of Object.entries(FIELDS)) {
    cmd.addOption(new Option(`${flagName(key)} <value>`, `${spec.doc} [env ${spec.env}]`));
  }
  return cmd;
}

function configFrom(opts: Record<string, unknown>): Config {
  const flags: RawFlags = {};
  for (const key of Object.keys(FIELDS) as FieldKey[]) {
    const v = opts[key];
    if (typeof v === "string") flags[key] = v;
  }
  return loadConfig(process.env, flags);
}

const program = new Command("layercache")
  .description("Early-exit image classification over Kafka, with cache heads learned online.")
  .showHelpAfterError();

withConfigFlags(program.command("config"))
  .description("print the resolved configuration (secrets masked) and exit")
  .action((opts: Record<string, unknown>) => {
    process.stdout.write(JSON.stringify(redactConfig(configFrom(opts)), null, 2) + "\n");
  });

withConfigFlags(program.command("inspect"))
  .description(
    "validate a model folder and print its segments, exits and MACs (counted from the ONNX graphs)",
  )
  .action(async (opts: Record<string, unknown>) => {
    process.stdout.write(await inspectModel(configFrom(opts).modelDir));
  });

withConfigFlags(program.command("worker"))
  .description(
    "consume frames, classify them through the early-exit cache, publish predictions and dead letters " +
      "(at least once, or exactly once with --delivery exactly-once; /metrics and /healthz on " +
      "--metrics-port; SIGTERM or SIGINT stops it cleanly)",
  )
  .action(async (opts: Record<string, unknown>) => {
    process.exitCode = await runWorker(configFrom(opts));
  });

addProduceOptions(withConfigFlags(program.command("produce")))
  .description(
    "publish frames to the frames topic from the Fashion-MNIST test split or a folder of PNG/JPEG files",
  )
  .action(async (opts: Record<string, unknown>) => {
    process.exitCode = await runProduce(configFrom(opts), opts);
  });

addTailOptions(withConfigFlags(program.command("tail")))
  .description("read the predictions topic and keep a live summary; a final one at the end")
  .action(async (opts: Record<string, unknown>) => {
    process.exitCode = await runTail(configFrom(opts), opts);
  });

addDemoOptions(withConfigFlags(program.command("demo")))
  .description(
    "end to end: bring up Kafka and Redis if missing, start two workers, produce the test split, " +
      "tail the predictions, print the summary, stop what it started",
  )
  .action(async (opts: Record<string, unknown>) => {
    process.exitCode = await runDemo(configFrom(opts), opts);
  });

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (isLayercacheError(err)) {
    process.stderr.write(`layercache: ${err.message}\n`);
    process.exit(2);
  }
  throw err;
}
