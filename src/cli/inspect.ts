/** `layercache inspect`: what a model folder holds, with MACs counted from its ONNX graphs. */
import { join } from "node:path";
import { loadManifest } from "../model/manifest.ts";
import { countMacsInFile } from "../model/macs.ts";

export async function inspectModel(dir: string): Promise<string> {
  const m = loadManifest(dir);
  const lines = [
    `model ${m.modelId} (${m.classes.length} classes, input [${m.input.shape}], test accuracy ${(100 * m.testAccuracy).toFixed(2)}%)`,
    "",
    "segment  MACs (manifest)  MACs (counted)  outputs",
  ];
  let total = 0;
  for (const s of m.segments) {
    const counted = (await countMacsInFile(join(dir, s.file))).total;
    total += counted;
    const outs = s.outputs.map((o) => `${o.name}[${o.shape}]`).join(" ");
    lines.push(
      `${String(s.index).padStart(7)}  ${s.macs.toLocaleString("en").padStart(15)}  ${counted.toLocaleString("en").padStart(14)}  ${outs}`,
    );
  }
  const full = (await countMacsInFile(join(dir, m.full.file))).total;
  lines.push(
    `  total  ${"".padStart(15)}  ${total.toLocaleString("en").padStart(14)}  (full graph: ${full.toLocaleString("en")})`,
  );
  lines.push("", "exit  after segment  features  pooling");
  for (const e of m.exits) {
    lines.push(
      `${String(e.index).padStart(4)}  ${String(e.afterSegment).padStart(13)}  ${String(e.size).padStart(8)}  ${e.pooling}`,
    );
  }
  return lines.join("\n") + "\n";
}
