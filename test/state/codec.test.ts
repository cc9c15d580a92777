/**
 * The formats of shared state without Redis: snapshots to hash fields and
 * back, training examples to bytes and back, and what each rejects; key
 * names; URLs in logs; handing a received example to a trainer.
 */
import { describe, expect, it } from "vitest";
import type { CacheObserver } from "../../src/cache/engine.ts";
import { softmaxWithTemperature } from "../../src/cache/heads.ts";
import type { TrainingExample } from "../../src/state/example-codec.ts";
import { decodeExample, encodeExample, exampleBytes } from "../../src/state/example-codec.ts";
import { deliverExample } from "../../src/state/examples.ts";
import { stateKeys } from "../../src/state/keys.ts";
import { backoffDelay, describeRedisUrl } from "../../src/state/redis-connection.ts";
import { decodeSnapshot, encodeSnapshot } from "../../src/state/snapshot-codec.ts";
import { thrownBy } from "../helpers/errors.ts";
import { LAYOUT, snapshotOf } from "./helpers.ts";

const PROVENANCE = { publishedAt: 1_700_000_000_000, publisher: "worker-a", fencingToken: 3, audit: null };

/** HGETALL's view of the fields: name to bytes. */
function asHash(fields: (string | Buffer)[]): Record<string, Buffer> {
  const out: Record<string, Buffer> = {};
  for (let i = 0; i < fields.length; i += 2) out[String(fields[i])] = Buffer.from(fields[i + 1]!);
  return out;
}

function probe(rows: number, size: number, seed: number): Float32Array {
  return Float32Array.from({ length: rows * size }, (_, i) => Math.sin(i * 1.7 + seed) * 4);
}

describe("snapshot codec", () => {
  it("round-trips heads bit for bit, decisions and provenance", () => {
    const snap = snapshotOf("m1", 7);
    const audit = [
      { audited: 10, agreed: 9 },
      { audited: 0, agreed: 0 },
      { audited: 3, agreed: 3 },
    ];
    const back = decodeSnapshot(
      asHash(encodeSnapshot(snap, { ...PROVENANCE, audit }, LAYOUT)),
      "m1",
      LAYOUT,
    )!;
    expect(back.version).toBe(7);
    expect(back.decisions).toEqual(snap.decisions);
    expect(back.decisions[1]!.calibration!.threshold).toBeUndefined();
    expect(back).toMatchObject({ publisher: "worker-a", fencingToken: 3, audit });
    snap.heads.forEach((head, e) => {
      const got = back.heads[e];
      if (!head) return expect(got).toBeNull();
      expect(Buffer.from(got!.toBytes()).equals(Buffer.from(head.toBytes()))).toBe(true);
      const d = LAYOUT.featureSizes[e]!;
      const [a, b] = [new Float32Array(4 * LAYOUT.classes), new Float32Array(4 * LAYOUT.classes)];
      head.predictBatch(probe(4, d, e), 4, a);
      got!.predictBatch(probe(4, d, e), 4, b);
      expect(b).toEqual(a);
    });
  });

  it("reads an empty hash as no snapshot", () => {
    expect(decodeSnapshot({}, "m1")).toBeUndefined();
  });

  it("rejects whatever is not a valid snapshot of this model as STATE_INVALID", () => {
    const good = asHash(encodeSnapshot(snapshotOf("m1", 2), PROVENANCE, LAYOUT));
    const meta = JSON.parse(good.meta!.toString()) as Record<string, unknown>;
    const variants: Record<string, Record<string, Buffer>> = {
      "no meta": { version: good.version! },
      "meta not JSON": { ...good, meta: Buffer.from("{not json") },
      "garbage version": { ...good, version: Buffer.from("2x") },
      "version mismatch": { ...good, version: Buffer.from("3") },
      "other model": { ...good, meta: Buffer.from(JSON.stringify({ ...meta, modelId: "m2" })) },
      "bad threshold": {
        ...good,
        meta: Buffer.from(
          JSON.stringify({
            ...meta,
            decisions: (meta.decisions as object[]).map((d, i) => (i === 0 ? { ...d, threshold: 7 } : d)),
          }),
        ),
      },
      "open without head": {
        ...good,
        meta: Buffer.from(JSON.stringify({ ...meta, heads: [false, true, false] })),
      },
      "missing head bytes": Object.fromEntries(Object.entries(good).filter(([k]) => k !== "head:1")),
      "unexpected head": { ...good, "head:2": good["head:1"]! },
      "garbage head": { ...good, "head:1": Buffer.from("LCXH but not really") },
      "truncated head": { ...good, "head:0": good["head:0"]!.subarray(0, 40) },
    };
    for (const [name, fields] of Object.entries(variants)) {
      const err = thrownBy(() => decodeSnapshot(fields, "m1", LAYOUT), "STATE_INVALID");
      expect(err.message, name).toMatch(/snapshot/);
    }
    const other = { featureSizes: [6, 11, 14], classes: 4 };
    thrownBy(() => decodeSnapshot(good, "m1", other), "STATE_INVALID");
  });

  it("refuses to publish a snapshot that readers would reject", () => {
    const snap = snapshotOf("m1", 1);
    const broken = { ...snap, decisions: snap.decisions.slice(1) };
    thrownBy(() => encodeSnapshot(broken, PROVENANCE), "INTERNAL");
    thrownBy(() => encodeSnapshot(snap, PROVENANCE, { featureSizes: [6, 10], classes: 4 }), "INTERNAL");
  });
});

describe("example codec", () => {
  const target = new Float32Array(4);
  softmaxWithTemperature(Float32Array.of(1, -2, 0.5, 3), 1, target);
  const features = LAYOUT.featureSizes.map((d, e) => probe(1, d, e));

  it("round-trips the three kinds", () => {
    const examples: TrainingExample[] = [
      { kind: "backbone", features, target },
      { kind: "held-out", features, target },
      { kind: "early-exit", features: features.slice(0, 2), target },
    ];
    for (const example of examples) {
      const bytes = encodeExample(example, LAYOUT);
      expect(bytes.length).toBe(exampleBytes(LAYOUT, example.features.length));
      const back = decodeExample(bytes, LAYOUT);
      expect(back.kind).toBe(example.kind);
      expect(back.target).toEqual(target);
      expect(back.features).toEqual(example.features);
    }
  });

  it("rejects garbage, other layouts, bad numbers and non-distributions", () => {
    const good = encodeExample({ kind: "backbone", features, target }, LAYOUT);
    const mutate = (offset: number, write: (view: DataView) => void): Buffer => {
      const copy = Buffer.from(good);
      write(new DataView(copy.buffer, copy.byteOffset + offset));
      return copy;
    };
    const targetAt = good.length - 16;
    const bad: Record<string, Uint8Array> = {
      garbage: Buffer.from("definitely not an example"),
      empty: new Uint8Array(0),
      truncated: good.subarray(0, good.length - 4),
      "unknown kind": mutate(6, (v) => v.setUint8(0, 9)),
      "NaN feature": mutate(16 + 12, (v) => v.setFloat32(0, NaN, true)),
      "negative target": mutate(targetAt, (v) => v.setFloat32(0, -0.5, true)),
      "target sum": mutate(targetAt, (v) => v.setFloat32(0, 0.9, true)),
      "early-exit with every exit": mutate(6, (v) => v.setUint8(0, 2)),
    };
    for (const [name, bytes] of Object.entries(bad)) {
      expect(thrownBy(() => decodeExample(bytes, LAYOUT), "STATE_INVALID").message, name).toMatch(/example/);
    }
    thrownBy(() => decodeExample(good, { featureSizes: [6, 10, 15], classes: 4 }), "STATE_INVALID");
    thrownBy(() => decodeExample(good, { featureSizes: [6, 10, 14], classes: 5 }), "STATE_INVALID");
  });

  it("reaches a trainer as the frame would have: same soft target, same held-out label", () => {
    const seen: { kind: string; target: Float32Array; label?: number }[] = [];
    const temperature = 2.5;
    const observer: CacheObserver = {
      onBackboneFrame: (_f, logits, heldOut) => {
        const soft = new Float32Array(4);
        softmaxWithTemperature(logits, temperature, soft);
        seen.push({
          kind: heldOut ? "held-out" : "backbone",
          target: soft,
          label: logits.indexOf(Math.max(...logits)),
        });
      },
      onEarlyExit: (f, probs) => void seen.push({ kind: `early-exit:${f.length}`, target: probs }),
    };
    deliverExample(observer, { kind: "backbone", features, target }, temperature);
    deliverExample(observer, { kind: "held-out", features, target }, temperature);
    deliverExample(observer, { kind: "early-exit", features: features.slice(0, 1), target }, temperature);
    expect(seen.map((s) => s.kind)).toEqual(["backbone", "held-out", "early-exit:1"]);
    for (const s of seen) {
      s.target.forEach((p, c) => expect(p).toBeCloseTo(target[c]!, 6));
    }
    expect(seen[1]!.label).toBe(3);
  });
});

describe("keys and connections", () => {
  it("keeps each model's keys apart, in one cluster slot, and refuses names that could break them", () => {
    const a = stateKeys("lc", "model-a");
    const b = stateKeys("lc", "model-b");
    expect(a.snapshot).toBe("lc:{model-a}:snapshot");
    const names = (k: typeof a) => [k.snapshot, k.lease, k.leaseToken, k.examples, k.announce];
    expect(new Set([...names(a), ...names(b)]).size).toBe(10);
    expect(names(a).every((name) => name.includes("{model-a}"))).toBe(true);
    thrownBy(() => stateKeys("lc", "model}x"), "CONFIG_INVALID");
    thrownBy(() => stateKeys("lc *", "m"), "CONFIG_INVALID");
  });

  it("never shows a password", () => {
    expect(describeRedisUrl("rediss://alice:s3cret@redis.example:6380/2")).toBe(
      "rediss://alice:***@redis.example:6380/2",
    );
    expect(describeRedisUrl("redis://:s3cret@127.0.0.1:6379")).toBe("redis://:***@127.0.0.1:6379");
    expect(describeRedisUrl("redis://127.0.0.1:6379")).toBe("redis://127.0.0.1:6379");
    expect(describeRedisUrl("not a url s3cret")).not.toContain("s3cret");
  });

  it("backs off exponentially, with jitter, up to a cap", () => {
    for (let times = 1; times < 40; times++) {
      const delay = backoffDelay(times, 100, 5_000);
      const ceiling = Math.min(5_000, 100 * 2 ** (times - 1));
      expect(delay).toBeGreaterThanOrEqual(ceiling / 2 - 1);
      expect(delay).toBeLessThanOrEqual(ceiling);
    }
  });
});
