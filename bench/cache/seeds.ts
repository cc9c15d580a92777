/**
 * npm run bench:seeds -- --seeds 1-8 [--jobs 2] [--vs option=value ...] [--against FILE] [--json]
 *                        [-- <bench options>]
 *
 * The cache bench (`npm run bench`, main.ts) once per seed, each run a child
 * process with `--json`, and the figures summarised across seeds: median,
 * mean, min and max, and on how many seeds each of the issue's targets was
 * met (seeds-report.ts). A seed fixes the stream's order and the engine's
 * randomness, so MACs saved, agreement and the exits are the same every time
 * a seed runs; between seeds they move by a point or two, so one seed cannot
 * tell a small improvement from luck.
 *
 * `--vs option=value ...` runs every seed twice, as it is (A) and with those
 * cache options set (B, as `--set` does), and reports B minus A seed by seed:
 * a change is worth keeping when it is ahead on most seeds, not on one.
 *
 * `--against FILE` compares with the A runs of an earlier `--json` report
 * instead (its seeds that this run has): MACs, agreement and exits repeat
 * exactly for a seed, so a change need not run the baseline again, though
 * latency compares better within one run.
 *
 * `--jobs 2` runs two benches at once on the 2 cores (A and B of a seed side
 * by side): MACs, agreement and exits do not change, but each run's latency
 * figures (cache arm against backbone arm inside the run) are noisier.
 * Options after `--` go to every bench run (for example `-- --frames 3000`).
 */
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Command } from "commander";
import { z } from "zod";
import { parseOptions, positiveNumber, wholeNumber } from "../../src/cli/options.ts";
import type { SeedFigures } from "./seeds-report.ts";
import {
  checkedFigures,
  FIGURES,
  paired,
  pairedTable,
  parseSeeds,
  seedFigures,
  seedsTable,
  streamOptions,
  summarise,
} from "./seeds-report.ts";
import { targetsMet } from "./targets.ts";

const MAIN = join(import.meta.dirname, "main.ts");
const ROOT = join(import.meta.dirname, "..", "..");

const schema = z.object({
  seeds: z.string().default("1-3"),
  jobs: wholeNumber(1, 8).default(1),
  vs: z.array(z.string()).optional(),
  against: z.string().optional(),
  json: z.boolean().default(false),
  target: positiveNumber.refine((p) => p < 1, "expected a share below 1").default(0.99),
});

const cli = new Command("bench-seeds")
  .option("--seeds <list>", "seeds to run, e.g. 1-8 or 1,3,9 (default 1-3)")
  .option("--jobs <n>", "bench runs at once (default 1)")
  .option("--vs <option=value...>", "also run every seed with these cache options set, and compare")
  .option("--against <file>", "compare with the A runs of an earlier bench:seeds --json report")
  .option("--target <p>", "target agreement, passed to every run (default 0.99)")
  .option("--json", "print one JSON object")
  .argument("[bench...]", "options for every bench run, after --")
  .parse();

interface Run {
  seed: number;
  arm: "A" | "B";
  args: string[];
}

async function main(): Promise<number> {
  const opt = parseOptions("bench:seeds", schema, cli.opts());
  const benchArgs = cli.args;
  for (const banned of ["--seed", "--json", "--plot", "--compare-heads", "--target"]) {
    if (benchArgs.includes(banned))
      throw new Error(`bench:seeds sets ${banned} itself; leave it out after --`);
  }
  if (opt.vs && opt.against)
    throw new Error("bench:seeds: --vs and --against are two ways to compare; give one");
  const baseline = opt.against ? readBaseline(opt.against, benchArgs, opt.target) : undefined;
  const seeds = parseSeeds(opt.seeds);
  const common = [...benchArgs, "--target", String(opt.target)];
  const vsArgs = (opt.vs ?? []).flatMap((pair) => ["--set", pair]);
  const runs: Run[] = seeds.flatMap((seed) => [
    { seed, arm: "A" as const, args: common },
    ...(opt.vs ? [{ seed, arm: "B" as const, args: [...common, ...vsArgs] }] : []),
  ]);
  const say = (line: string) => process.stderr.write(`[bench:seeds] ${line}\n`);
  say(
    `${runs.length} run(s): seeds ${seeds.join(", ")}${opt.vs ? `, each as it is (A) and with ${opt.vs.join(" ")} (B)` : ""}, ${opt.jobs} at a time`,
  );
  const results = new Map<Run, SeedFigures>();
  let next = 0;
  let failed = 0;
  const worker = async () => {
    while (next < runs.length) {
      const run = runs[next++]!;
      const t0 = performance.now();
      try {
        const figures = seedFigures(run.seed, await benchJson(run));
        results.set(run, figures);
        say(
          `seed ${run.seed}${opt.vs ? ` (${run.arm})` : ""}: MACs saved ${figures.macsSavedPct.toFixed(2)}%, latency saved ${figures.latencySavedPct.toFixed(2)}%, agreement ${figures.agreement.toFixed(4)}, ${((performance.now() - t0) / 1000).toFixed(0)} s`,
        );
      } catch (err) {
        failed++;
        say(`seed ${run.seed}${opt.vs ? ` (${run.arm})` : ""} failed: ${(err as Error).message}`);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(opt.jobs, runs.length) }, worker));

  const arm = (name: "A" | "B") =>
    runs.filter((r) => r.arm === name && results.has(r)).map((r) => results.get(r)!);
  const a = arm("A");
  const b = arm("B");
  if (opt.json) {
    const report = {
      seeds,
      benchArgs,
      target: opt.target,
      vs: opt.vs,
      failed,
      runs: { A: a, B: opt.vs ? b : undefined },
      summary: { A: summarise(a), B: opt.vs ? summarise(b) : undefined },
      against: opt.against,
      // B minus A seed by seed: this run's B against its A, or this run against the earlier report's A.
      compared: opt.vs ? comparison(a, b) : baseline ? comparison(baseline, a) : undefined,
    };
    process.stdout.write(JSON.stringify(report, null, 2) + "\n");
    return failed > 0 ? 1 : 0;
  }
  const out = (s = "") => process.stdout.write(s + "\n");
  const describe = (runsOf: SeedFigures[], name: string) => {
    if (runsOf.length === 0) return;
    out(`${name}${benchArgs.length > 0 ? ` (bench options: ${benchArgs.join(" ")})` : ""}`);
    out("");
    out(seedsTable(runsOf));
    out("");
    out(`targets met: ${targetsMet(runsOf, opt.target).join("; ")}`);
    out("");
  };
  describe(a, opt.vs ? "A: as it is" : "cache bench by seed");
  if (opt.vs) {
    describe(b, `B: ${opt.vs.join(" ")}`);
    out(pairedTable(a, b));
  }
  if (baseline) {
    out(`against ${opt.against} (A there, this run B):`);
    out("");
    out(pairedTable(baseline, a));
  }
  return failed > 0 ? 1 : 0;
}

function comparison(a: SeedFigures[], b: SeedFigures[]) {
  return Object.fromEntries(FIGURES.map(({ name }) => [name, paired(a, b, name)]));
}

/**
 * The A runs of an earlier `bench:seeds --json` report, each checked as a
 * bench result is. The report must have measured the same stream at the same
 * target: only `--set` options may differ, or the comparison means nothing.
 */
function readBaseline(file: string, benchArgs: readonly string[], target: number): SeedFigures[] {
  let report: unknown;
  try {
    report = JSON.parse(readFileSync(file, "utf8"));
  } catch (err) {
    throw new Error(`--against ${file}: not a bench:seeds --json report (${(err as Error).message})`);
  }
  const {
    runs,
    benchArgs: theirs,
    target: theirTarget,
  } = report as {
    runs?: { A?: unknown };
    benchArgs?: unknown;
    target?: unknown;
  };
  if (!Array.isArray(runs?.A)) throw new Error(`--against ${file}: no runs.A in it`);
  const ours = streamOptions(benchArgs).join(" ");
  const before = Array.isArray(theirs) ? streamOptions(theirs.map(String)).join(" ") : "";
  if (before !== ours || theirTarget !== target) {
    throw new Error(
      `--against ${file}: it measured "${before}" at target ${String(theirTarget)}, this run "${ours}" at ${target}; only --set options may differ`,
    );
  }
  return runs.A.map((r: { seed?: unknown }) => {
    if (typeof r.seed !== "number") throw new Error(`--against ${file}: a run without a seed`);
    return checkedFigures(r.seed, r);
  });
}

/** One `npm run bench -- --json --seed N ...` as a child process; its JSON. */
function benchJson(run: Run): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      ["--import", "tsx", MAIN, "--json", "--seed", String(run.seed), ...run.args],
      { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] },
    );
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    child.stdout.on("data", (d: Buffer) => stdout.push(d));
    child.stderr.on("data", (d: Buffer) => stderr.push(d));
    child.on("error", reject);
    child.on("close", (code) => {
      if (code !== 0) {
        const tail = Buffer.concat(stderr).toString().trim().split("\n").slice(-5).join(" | ");
        reject(new Error(`exit code ${code}: ${tail}`));
        return;
      }
      try {
        resolve(JSON.parse(Buffer.concat(stdout).toString()));
      } catch (err) {
        reject(new Error(`no JSON on stdout (${(err as Error).message})`));
      }
    });
  });
}

process.exitCode = await main();
