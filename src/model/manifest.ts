/**
 * The backbone manifest (models/<name>/manifest.json): what the model layer
 * needs to run a segmented network. Unknown fields, missing files and shapes
 * that do not chain are rejected here, before any session is created.
 * Format: docs/model-manifest.md.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import { LayercacheError } from "../errors/index.ts";

const shape = z.array(z.number().int().positive()).min(1);
const tensor = z.strictObject({ name: z.string().min(1), shape });
const fileName = z.string().regex(/^[A-Za-z0-9._-]+$/, "a plain file name inside the model folder");

const manifestSchema = z.strictObject({
  format: z.literal(1),
  name: z.string().min(1),
  modelId: z.string().regex(/^[A-Za-z0-9._-]{1,128}$/),
  input: z.strictObject({
    name: z.string().min(1),
    shape: z.tuple([z.number().int().positive(), z.number().int().positive(), z.number().int().positive()]),
    dtype: z.literal("float32"),
    layout: z.literal("NCHW"),
    normalisation: z.strictObject({
      scale: z.number().positive(),
      mean: z.array(z.number()).min(1),
      std: z.array(z.number().positive()).min(1),
    }),
  }),
  weights: fileName.optional(),
  classes: z.array(z.string().min(1)).min(2),
  testAccuracy: z.number().min(0).max(1),
  full: z.strictObject({
    file: fileName,
    input: tensor,
    outputs: z.array(tensor).length(1),
    macs: z.number().int().nonnegative(),
  }),
  segments: z
    .array(
      z.strictObject({
        index: z.number().int().nonnegative(),
        file: fileName,
        input: tensor,
        outputs: z.array(tensor).min(1),
        macs: z.number().int().nonnegative(),
      }),
    )
    .min(1),
  exits: z.array(
    z.strictObject({
      index: z.number().int().nonnegative(),
      afterSegment: z.number().int().nonnegative(),
      feature: z.string().min(1),
      size: z.number().int().positive(),
      pooling: z.string().min(1),
      activation: shape,
    }),
  ),
});

export type Manifest = z.output<typeof manifestSchema>;
export type SegmentSpec = Manifest["segments"][number];
export type ExitSpec = Manifest["exits"][number];

/** Name of the tensor a segment hands to the next one, and of the final logits. */
export const ACTIVATION = "act";
export const LOGITS = "logits";

function invalid(where: string, problem: string): LayercacheError {
  return new LayercacheError("MANIFEST_INVALID", `${where}: ${problem}`);
}

const sameShape = (a: readonly number[], b: readonly number[]) =>
  a.length === b.length && a.every((d, i) => d === b[i]);

/** Reads, parses and cross-checks `dir/manifest.json`. */
export function loadManifest(dir: string): Manifest {
  const path = join(dir, "manifest.json");
  if (!existsSync(path)) throw invalid(path, "file not found");
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, "utf8"));
  } catch (err) {
    throw new LayercacheError("MANIFEST_INVALID", `${path}: not valid JSON`, { cause: err });
  }
  return validateManifest(raw, dir, path);
}

export function validateManifest(raw: unknown, dir: string, where = "manifest"): Manifest {
  const parsed = manifestSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const at = issue.path.length > 0 ? issue.path.join(".") : "(root)";
    throw invalid(where, `${at}: ${issue.message}`);
  }
  const m = parsed.data;
  for (const file of [m.full.file, ...m.segments.map((s) => s.file), ...(m.weights ? [m.weights] : [])]) {
    if (!existsSync(join(dir, file))) throw invalid(where, `file ${file} listed in the manifest is missing`);
  }
  checkChain(m, where);
  checkExits(m, where);
  return m;
}

function checkChain(m: Manifest, where: string): void {
  let expected: readonly number[] = m.input.shape;
  m.segments.forEach((s, i) => {
    if (s.index !== i) throw invalid(where, `segments[${i}].index is ${s.index}, expected ${i}`);
    if (!sameShape(s.input.shape, expected)) {
      throw invalid(
        where,
        `segment ${i} takes shape [${s.input.shape}] but receives [${expected}] from ` +
          (i === 0 ? "the model input" : `segment ${i - 1}`),
      );
    }
    const last = i === m.segments.length - 1;
    const next = s.outputs.find((o) => o.name === (last ? LOGITS : ACTIVATION));
    if (!next) throw invalid(where, `segment ${i} has no '${last ? LOGITS : ACTIVATION}' output`);
    expected = next.shape;
  });
  if (!sameShape(expected, [m.classes.length])) {
    throw invalid(where, `the last segment outputs [${expected}] logits for ${m.classes.length} classes`);
  }
  const fullOut = m.full.outputs[0]!;
  if (!sameShape(fullOut.shape, [m.classes.length]) || !sameShape(m.full.input.shape, m.input.shape)) {
    throw invalid(where, `full model shapes [${m.full.input.shape}] -> [${fullOut.shape}] do not match`);
  }
}

function checkExits(m: Manifest, where: string): void {
  m.exits.forEach((e, i) => {
    if (e.index !== i) throw invalid(where, `exits[${i}].index is ${e.index}, expected ${i}`);
    const seg = m.segments[e.afterSegment];
    if (!seg || e.afterSegment >= m.segments.length - 1) {
      throw invalid(where, `exit ${i} is after segment ${e.afterSegment}, which is not a segment boundary`);
    }
    const feat = seg.outputs.find((o) => o.name === e.feature);
    if (!feat)
      throw invalid(where, `exit ${i} reads '${e.feature}', which segment ${seg.index} does not output`);
    if (!sameShape(feat.shape, [e.size])) {
      throw invalid(
        where,
        `exit ${i} declares ${e.size} features but '${e.feature}' has shape [${feat.shape}]`,
      );
    }
  });
}

/** Per-frame element count of a shape. */
export function elements(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}
