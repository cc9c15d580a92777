/**
 * The inference thread's hand-over to its learner thread (learner-feed.ts):
 * what the engine reports, through the ExampleForwarder it would use for
 * Redis, is copied at once and posted in one message per synchronous step,
 * and both sides keep at most their capacity, dropping the oldest and
 * counting them. (The learner's use of it, training or sending on
 * through Redis, runs in every fleet test and `npm run bench:kafka`.)
 */
import { describe, expect, it } from "vitest";
import type { LocalEntry } from "../../src/pipeline/learner-feed.ts";
import { LearnerFeed, LocalIntake } from "../../src/pipeline/learner-feed.ts";
import { ExampleForwarder } from "../../src/state/examples.ts";

const features = () => [Float32Array.of(1, 2, 3), Float32Array.of(4, 5)];
const flushed = () => new Promise<void>((resolve) => queueMicrotask(resolve));

/** The engine's observer on an inference thread with a learner: a forwarder into the feed. */
function feed(earlyExits = true): { feed: ExampleForwarder; posts: LocalEntry[][] } {
  const posts: LocalEntry[][] = [];
  const sink = new LearnerFeed();
  sink.attach((entries) => posts.push(entries));
  return { feed: new ExampleForwarder(sink, { temperature: 1, earlyExits }), posts };
}

describe("LearnerFeed", () => {
  it("posts a step's examples and audits in one message, copied from the engine's arrays", async () => {
    const { feed: f, posts } = feed();
    const held = features();
    const logits = Float32Array.of(2, 0, 0, 0);
    f.onBackboneFrame(held, logits, false);
    f.onBackboneFrame(features(), logits, true);
    const probs = Float32Array.of(0.7, 0.1, 0.1, 0.1);
    f.onEarlyExit(features().slice(0, 1), probs);
    f.onAudit(2, false, true, 9);
    // The engine reuses its arrays: what was handed over must not change with them.
    held[0]![0] = 99;
    probs[0] = 0;
    expect(posts).toEqual([]);
    await flushed();
    expect(posts).toHaveLength(1);
    const [backbone, heldOut, early, audit] = posts[0]!;
    expect(backbone).toMatchObject({ kind: "example", example: { kind: "backbone" } });
    expect(heldOut).toMatchObject({ kind: "example", example: { kind: "held-out" } });
    expect(early).toMatchObject({ kind: "example", example: { kind: "early-exit" } });
    expect(audit).toEqual({
      kind: "audit",
      record: { exit: 2, agreed: false, lenient: true, headsVersion: 9 },
    });
    if (backbone?.kind !== "example" || early?.kind !== "example") throw new Error("not examples");
    expect(Array.from(backbone.example.features[0]!)).toEqual([1, 2, 3]);
    // The backbone's softmax at the temperature, as a forwarder through Redis would send it.
    const t = backbone.example.target;
    expect(t[0]!).toBeCloseTo(Math.exp(2) / (Math.exp(2) + 3), 6);
    expect(Array.from(early.example.target)).toEqual(Array.from(Float32Array.of(0.7, 0.1, 0.1, 0.1)));
    // The next step is the next message.
    f.onAudit(0, true, false, 9);
    await flushed();
    expect(posts).toHaveLength(2);
  });

  it("holds what comes before the learner is attached, up to its capacity, oldest dropped", async () => {
    const f = new LearnerFeed(3);
    for (let v = 0; v < 5; v++) f.offerAudit({ exit: 0, agreed: true, lenient: false, headsVersion: v });
    await flushed();
    expect(f.dropped).toBe(2);
    const posts: LocalEntry[][] = [];
    f.attach((entries) => posts.push(entries));
    await flushed();
    expect(posts.flat().map((e) => (e.kind === "audit" ? e.record.headsVersion : -1))).toEqual([2, 3, 4]);
  });

  it("leaves early exits out when they do not teach the exits before them", async () => {
    const { feed: f, posts } = feed(false);
    f.onEarlyExit(features(), Float32Array.of(0.7, 0.1, 0.1, 0.1));
    await flushed();
    expect(posts).toEqual([]);
  });
});

describe("LocalIntake", () => {
  it("hands over everything once, oldest first, and drops the oldest beyond its capacity", () => {
    const intake = new LocalIntake(3);
    const audit = (v: number): LocalEntry => ({
      kind: "audit",
      record: { exit: 0, agreed: true, lenient: false, headsVersion: v },
    });
    intake.add([audit(1), audit(2)]);
    intake.add([audit(3), audit(4)]);
    expect(intake.size).toBe(3);
    expect(intake.dropped).toBe(1);
    expect(intake.take().map((e) => (e.kind === "audit" ? e.record.headsVersion : -1))).toEqual([2, 3, 4]);
    expect(intake.size).toBe(0);
    expect(intake.take()).toEqual([]);
  });
});
