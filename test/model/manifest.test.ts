import { mkdtempSync, readFileSync, symlinkSync, writeFileSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { SegmentedBackbone } from "../../src/model/backbone.ts";
import { loadManifest, validateManifest } from "../../src/model/manifest.ts";
import { MODEL_DIR } from "../helpers/model.ts";
import { thrownBy } from "../helpers/errors.ts";

type Json = Record<string, unknown> & {
  segments: Record<string, unknown>[];
  exits: Record<string, unknown>[];
};
const original = JSON.parse(readFileSync(join(MODEL_DIR, "manifest.json"), "utf8")) as Json;
const copy = (): Json => structuredClone(original);

function rejection(fn: () => unknown): string {
  return thrownBy(fn, "MANIFEST_INVALID").message;
}

/** A model folder whose files link to the real ones, with a manifest of our own. */
function folderWith(manifest: unknown): string {
  const dir = mkdtempSync(join(tmpdir(), "layercache-manifest-"));
  for (const f of readdirSync(MODEL_DIR))
    if (f !== "manifest.json") symlinkSync(join(MODEL_DIR, f), join(dir, f));
  writeFileSync(join(dir, "manifest.json"), JSON.stringify(manifest));
  return dir;
}

describe("model manifest", () => {
  it("accepts the bundled model", () => {
    const m = loadManifest(MODEL_DIR);
    expect(m.segments).toHaveLength(8);
    expect(m.exits).toHaveLength(7);
    expect(m.classes).toHaveLength(10);
  });

  it("rejects a missing manifest and one that is not JSON", () => {
    expect(rejection(() => loadManifest(join(MODEL_DIR, "nowhere")))).toMatch(
      /manifest.json: file not found/,
    );
    const dir = folderWith({});
    writeFileSync(join(dir, "manifest.json"), "{ not json");
    expect(rejection(() => loadManifest(dir))).toMatch(/not valid JSON/);
  });

  it("rejects a segment file that is not there", () => {
    const m = copy();
    m.segments[3]!.file = "segment-99.onnx";
    expect(rejection(() => validateManifest(m, MODEL_DIR))).toMatch(/file segment-99.onnx .* is missing/);
  });

  it("rejects unknown fields, naming where they are", () => {
    const m = copy();
    (m.segments[2] as Record<string, unknown>).flops = 1;
    expect(rejection(() => validateManifest(m, MODEL_DIR))).toMatch(/segments\.2.*flops/);
  });

  it("rejects segments whose shapes do not chain", () => {
    const m = copy();
    m.segments[4]!.input = { name: "x", shape: [64, 7, 7] };
    expect(rejection(() => validateManifest(m, MODEL_DIR))).toMatch(
      /segment 4 takes shape \[64,7,7\] but receives \[64,14,14\] from segment 3/,
    );
  });

  it("rejects an exit whose feature size does not match the segment output", () => {
    const m = copy();
    m.exits[1]!.size = 999;
    expect(rejection(() => validateManifest(m, MODEL_DIR))).toMatch(/exit 1 declares 999 features/);
  });

  it("rejects an exit placed after the last segment", () => {
    const m = copy();
    m.exits[6]!.afterSegment = 7;
    expect(rejection(() => validateManifest(m, MODEL_DIR))).toMatch(/not a segment boundary/);
  });

  it("rejects, at load, a manifest whose tensor names are not the ONNX file's", async () => {
    const m = copy();
    m.segments[0]!.input = { name: "pixels", shape: [1, 28, 28] };
    (m.input as Record<string, unknown>).name = "pixels";
    const dir = folderWith(m);
    await expect(SegmentedBackbone.load(dir, { intraOpThreads: 1, loadFull: false })).rejects.toThrow(
      /segment-0.onnx: inputs are \[x\], manifest says 'pixels'/,
    );
  });
});
