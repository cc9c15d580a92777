/**
 * The cache bench's "final heads from the first frame" figure
 * (bench/cache/report.ts `finalHeadsFromTheStart`) on hand-made head answers:
 * exits decided on the held-out frames that have arrived, at the trainer's
 * cadence, and MACs charged as the engine charges them.
 */
import { describe, expect, it } from "vitest";
import type { ExitMacs, FromTheStartOptions, HeadAnswers } from "../../bench/cache/report.ts";
import { finalHeadsFromTheStart } from "../../bench/cache/report.ts";

const options: FromTheStartOptions = {
  targetAgreement: 0.99,
  confidenceLevel: 0.95,
  boundMethod: "clopper-pearson",
  exitOverheadMacs: 0,
  publishEvery: 200,
  auditRate: 0,
};

/** One exit after 13 of the backbone's 100 MACs, its head costing 1. */
const macs: ExitMacs = { full: 100, through: [13], remaining: [87], heads: [1] };

/** `count` frames, exit 0 sure of every one (0.99); the frames in `wrong` get another label than the backbone's. */
function stream(count: number, wrong: (f: number) => boolean = () => false) {
  const backbone = Array.from({ length: count }, (_, f) => f % 10);
  const answers: HeadAnswers = {
    labels: [Int32Array.from(backbone, (label, f) => (wrong(f) ? (label + 1) % 10 : label))],
    confidence: [new Float32Array(count).fill(0.99)],
  };
  return { answers, backbone };
}

/** Every other frame from `from` up to `to` (excluded): the held-out frames. */
const everyOther = (from: number, to: number) =>
  Array.from({ length: (to - from) / 2 }, (_, i) => from + 2 * i);

describe("finalHeadsFromTheStart", () => {
  it("opens the exit at the first calibration with the evidence to prove it, and charges every frame", () => {
    const { answers, backbone } = stream(2000);
    // 300 held-out frames by frame 600: 299 agreeing ones prove 0.99 at 95%.
    const heldOut = everyOther(0, 1200);
    const result = finalHeadsFromTheStart(macs, answers, backbone, options, heldOut);
    // Frames 0-599 run the backbone (100 each); held-out frames from 600 on pay the head too (101);
    // the other 1,100 leave at exit 0 (13 + 1).
    const spent = 600 * 100 + 300 * 101 + 1100 * 14;
    expect(result.macsSavedPct).toBeCloseTo(100 * (1 - spent / 200_000), 10);
    // Were evidence free, the 300 held-out frames from 600 on would leave at exit 0 too.
    expect(result.freeEvidenceMacsSavedPct).toBeCloseTo(100 * (1 - (600 * 100 + 1400 * 14) / 200_000), 10);
    // Frame 600 is held out: the first early answer is the frame after it.
    expect(result.firstExitFrame).toBe(601);
    expect(result.exitShare).toEqual([1100 / 2000]);
  });

  it("proves only on held-out frames that have arrived", () => {
    const { answers, backbone } = stream(2000);
    // The 300 held-out frames are 1000-1598: the calibration at frame 1600 is the first that holds them all.
    const result = finalHeadsFromTheStart(macs, answers, backbone, options, everyOther(1000, 1600));
    expect(result.firstExitFrame).toBe(1600);
    expect(result.exitShare).toEqual([400 / 2000]);
  });

  it("keeps the exit closed when its most confident held-out frames disagree", () => {
    // Every tenth frame disagrees, at the same confidence as the rest: no threshold proves 0.99.
    const { answers, backbone } = stream(2000, (f) => f % 10 === 0);
    const result = finalHeadsFromTheStart(macs, answers, backbone, options, everyOther(0, 1200));
    expect(result.macsSavedPct).toBe(0);
    expect(result.freeEvidenceMacsSavedPct).toBe(0);
    expect(result.firstExitFrame).toBe(-1);
    expect(result.exitShare).toEqual([0]);
  });

  it("charges the audited share of early answers the rest of the backbone", () => {
    const { answers, backbone } = stream(2000);
    const result = finalHeadsFromTheStart(
      macs,
      answers,
      backbone,
      { ...options, auditRate: 0.5 },
      everyOther(0, 1200),
    );
    // An early answer costs 101 - 87 on average when half of them run the rest (87 MACs) anyway.
    const spent = 600 * 100 + 300 * 101 + 1100 * (101 - 0.5 * 87);
    expect(result.macsSavedPct).toBeCloseTo(100 * (1 - spent / 200_000), 10);
    const free = 600 * 100 + 1400 * (101 - 0.5 * 87);
    expect(result.freeEvidenceMacsSavedPct).toBeCloseTo(100 * (1 - free / 200_000), 10);
  });

  it("answers at the first open exit that is sure, paying every head on the way", () => {
    // Exit 0 is sure and right on the even frames, unsure and wrong on the odd ones; exit 1 (after
    // 50 MACs, head 2) is sure and right on every frame.
    const count = 4000;
    const backbone = Array.from({ length: count }, (_, f) => f % 10);
    const answers: HeadAnswers = {
      labels: [
        Int32Array.from(backbone, (l, f) => (f % 2 === 0 ? l : (l + 1) % 10)),
        Int32Array.from(backbone),
      ],
      confidence: [
        Float32Array.from({ length: count }, (_, f) => (f % 2 === 0 ? 0.99 : 0.2)),
        new Float32Array(count).fill(0.99),
      ],
    };
    const two: ExitMacs = { full: 100, through: [13, 50], remaining: [87, 50], heads: [1, 2] };
    // Frames 0-1,199 held out. At frame 400 exit 0 proves nothing yet (200 sure frames), so exit 1
    // sees all 400 and opens; at frame 600, 300 even ones prove exit 0 and the 300 odd ones it leaves
    // keep exit 1 open.
    const heldOut = Array.from({ length: 1200 }, (_, f) => f);
    const result = finalHeadsFromTheStart(two, answers, backbone, options, heldOut);
    expect(result.firstExitFrame).toBe(1200);
    expect(result.exitShare).toEqual([1400 / count, 1400 / count]);
    // Held-out frames pay every open head; even frames leave at exit 0, odd ones at exit 1 after both heads.
    const spent = 400 * 100 + 200 * (100 + 2) + 600 * (100 + 3) + 1400 * (13 + 1) + 1400 * (50 + 1 + 2);
    expect(result.macsSavedPct).toBeCloseTo(100 * (1 - spent / (count * 100)), 10);
  });

  it("does not open an exit that costs more than it saves", () => {
    const { answers, backbone } = stream(2000);
    // A head that costs more than the 87 MACs an answer there saves.
    const costly: ExitMacs = { ...macs, heads: [90] };
    const result = finalHeadsFromTheStart(costly, answers, backbone, options, everyOther(0, 1200));
    expect(result.firstExitFrame).toBe(-1);
    expect(result.macsSavedPct).toBe(0);
  });
});
