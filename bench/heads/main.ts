/**
 * npm run bench:heads -- [--calls N] [--json]
 *
 * What one head evaluation costs on the frame path: per call, the head's
 * per-row loops in TypeScript against its onnxruntime kernel, for the head
 * shapes the bundled model's exits give (softmax and MLP, 160 to 1,600
 * features) at batch 1, 4 and 16. Between calls a 16 MB buffer is written,
 * as the backbone's spans do between two head calls, so neither arm finds
 * its weights in the CPU caches. The engine answers in TypeScript below
 * the MACs per call where the kernel starts to win (engine.ts,
 * KERNEL_MIN_MACS); the last column says which is faster.
 */
import { Command } from "commander";
import { createHead } from "../../src/cache/heads.ts";
import type { HeadKind } from "../../src/cache/heads.ts";
import { KernelPool } from "../../src/cache/head-kernel.ts";
import { SeededRandom } from "../../src/cache/random.ts";
import { median, table } from "../lib/stats.ts";

const opt = new Command("bench-heads")
  .option("--calls <n>", "timed calls per head and batch (median reported)", "1000")
  .option("--json", "print JSON")
  .parse()
  .opts<{ calls: string; json?: boolean }>();

const SHAPES: { kind: HeadKind; inputSize: number }[] = [
  { kind: "softmax", inputSize: 160 },
  { kind: "softmax", inputSize: 1600 },
  { kind: "mlp", inputSize: 160 },
  { kind: "mlp", inputSize: 320 },
  { kind: "mlp", inputSize: 640 },
  { kind: "mlp", inputSize: 1280 },
  { kind: "mlp", inputSize: 1600 },
];
const BATCHES = [1, 4, 16];
const CLASSES = 10;
const HIDDEN = 64;

interface Row {
  kind: HeadKind;
  inputSize: number;
  batch: number;
  macsPerCall: number;
  typescriptUs: number;
  kernelUs: number;
}

async function main(): Promise<void> {
  const calls = Number(opt.calls);
  const pool = new KernelPool(1);
  const random = new SeededRandom(1);
  const flush = new Float32Array(4 << 20);
  const rows: Row[] = [];
  for (const { kind, inputSize } of SHAPES) {
    const head = createHead({ headKind: kind, mlpHidden: HIDDEN }, inputSize, CLASSES, random);
    const kernel = await pool.get(head.shape);
    for (const batch of BATCHES) {
      const x = new Float32Array(batch * inputSize).map(() => random.uniform());
      const out = new Float32Array(batch * CLASSES);
      // Warm-up: the first runs allocate and pick kernels.
      for (let i = 0; i < 100; i++) {
        head.predictBatch(x, batch, out);
        await head.predictBatchWith(kernel, x, batch, out);
      }
      const ts: number[] = [];
      const ort: number[] = [];
      for (let i = 0; i < calls; i++) {
        flush.fill(i);
        let t0 = performance.now();
        head.predictBatch(x, batch, out);
        ts.push(performance.now() - t0);
        flush.fill(i + 1);
        t0 = performance.now();
        await head.predictBatchWith(kernel, x, batch, out);
        ort.push(performance.now() - t0);
      }
      rows.push({
        kind,
        inputSize,
        batch,
        macsPerCall: head.macs() * batch,
        typescriptUs: 1000 * median(ts),
        kernelUs: 1000 * median(ort),
      });
    }
  }
  await pool.release();
  if (opt.json) {
    process.stdout.write(JSON.stringify({ calls, rows }, null, 2) + "\n");
    return;
  }
  process.stdout.write(
    table(
      ["head", "features", "batch", "MACs per call", "TypeScript µs", "onnxruntime µs", "faster"],
      rows.map((r) => [
        r.kind,
        r.inputSize,
        r.batch,
        r.macsPerCall,
        r.typescriptUs.toFixed(1),
        r.kernelUs.toFixed(1),
        r.kernelUs < r.typescriptUs ? "onnxruntime" : "TypeScript",
      ]),
    ) + "\n",
  );
}

await main();
