/** The worker's metric definitions on their own: what the stage reports, and gauges read at scrape time. */
import { describe, expect, it } from "vitest";
import type { Prediction } from "../../src/codec/prediction.ts";
import type { ExitAudit, ExitState, ModelInfo } from "../../src/pipeline/inference-protocol.ts";
import type { GaugeSources } from "../../src/pipeline/metrics.ts";
import { WorkerMetrics } from "../../src/pipeline/metrics.ts";
import { metric, parseMetrics } from "../helpers/prometheus.ts";

const model: ModelInfo = {
  modelId: "m1",
  classes: ["a", "b"],
  input: { channels: 1, height: 2, width: 2 },
  fullMacs: 1000,
  exits: 3,
};

function prediction(over: Partial<Prediction>): Prediction {
  return {
    frameId: "f",
    label: 0,
    labelName: "a",
    confidence: 0.9,
    exit: -1,
    audited: false,
    macs: 1000,
    macsSaved: 0,
    modelId: "m1",
    headsVersion: 4,
    queueMs: 20,
    computeMs: 2,
    endToEndMs: 50,
    workerId: "w",
    producedAt: 0,
    truthLabel: null,
    exactHit: false,
    ...over,
  };
}

/** Metrics of an idle at-least-once worker with the model loaded, and any other gauge sources given. */
function idleMetrics(sources: Partial<GaugeSources> = {}): WorkerMetrics {
  return new WorkerMetrics(
    { workerId: "w", delivery: "at-least-once" },
    {
      inFlight: () => 0,
      pausedPartitions: () => 0,
      lag: () => new Map(),
      audit: () => [],
      model: () => model,
      ...sources,
    },
  );
}

describe("WorkerMetrics", () => {
  it("counts what the stage reports and reads gauges when scraped", async () => {
    const audit: ExitAudit[] = [
      { exit: 1, windowAudited: 20, windowAgreed: 19, audited: 50, agreed: 48 },
      { exit: 2, windowAudited: 0, windowAgreed: 0, audited: 0, agreed: 0 },
    ];
    let inFlight = 7;
    const metrics = new WorkerMetrics(
      { workerId: "w", delivery: "exactly-once" },
      {
        inFlight: () => inFlight,
        pausedPartitions: () => 1,
        lag: () => new Map([[3, 12]]),
        audit: () => audit,
        model: () => model,
      },
    );
    metrics.modelLoaded(model, "exactly-once");
    metrics.consumed();
    metrics.consumed();
    metrics.predicted(prediction({ exit: 1, macs: 300, macsSaved: 700, audited: false }));
    metrics.predicted(prediction({ exit: -1, audited: true }));
    metrics.deadLettered("undecodable");
    metrics.transaction("committed");

    const samples = parseMetrics(await metrics.registry.metrics());
    expect(metric(samples, "layercache_frames_consumed_total")).toBe(2);
    expect(metric(samples, "layercache_predictions_total")).toBe(2);
    expect(metric(samples, "layercache_exit_hits_total", { exit: "1" })).toBe(1);
    expect(metric(samples, "layercache_exit_hits_total", { exit: "backbone" })).toBe(1);
    // Exits that never answered are there, at 0.
    expect(metric(samples, "layercache_exit_hits_total", { exit: "0" })).toBe(0);
    expect(metric(samples, "layercache_exit_hits_total", { exit: "2" })).toBe(0);
    expect(metric(samples, "layercache_audited_frames_total")).toBe(1);
    expect(metric(samples, "layercache_macs_executed_total")).toBe(1300);
    expect(metric(samples, "layercache_macs_saved_total")).toBe(700);
    expect(metric(samples, "layercache_dead_letters_total", { reason: "undecodable" })).toBe(1);
    expect(metric(samples, "layercache_transactions_total", { result: "committed" })).toBe(1);
    expect(metric(samples, "layercache_transactions_total", { result: "fenced" })).toBe(0);
    expect(metric(samples, "layercache_end_to_end_seconds_sum")).toBeCloseTo(0.1);
    expect(metric(samples, "layercache_end_to_end_seconds_bucket", { le: "0.05" })).toBe(2);
    expect(metric(samples, "layercache_audit_agreement", { exit: "1" })).toBeCloseTo(0.95);
    // No audit in the window: no agreement to report.
    expect(metric(samples, "layercache_audit_agreement", { exit: "2" })).toBeUndefined();
    expect(metric(samples, "layercache_audit_window_frames", { exit: "1" })).toBe(20);
    expect(metric(samples, "layercache_consumer_lag", { partition: "3" })).toBe(12);
    expect(metric(samples, "layercache_in_flight_frames")).toBe(7);
    expect(metric(samples, "layercache_paused_partitions")).toBe(1);
    expect(
      metric(samples, "layercache_worker_info", { worker_id: "w", delivery: "exactly-once", model_id: "m1" }),
    ).toBe(1);

    inFlight = 0;
    expect(metric(parseMetrics(await metrics.registry.metrics()), "layercache_in_flight_frames")).toBe(0);
  });

  it("shows which exits are open, and at what threshold, for the heads that answer now", async () => {
    let exits: ExitState[] = [];
    const metrics = idleMetrics({ exits: () => exits });
    // Before the first heads: nothing to show.
    let samples = parseMetrics(await metrics.registry.metrics());
    expect(metric(samples, "layercache_exit_open", { exit: "0" })).toBeUndefined();
    exits = [
      { exit: 0, open: true, threshold: 0.941, reason: "agreement >= 0.9900 proven on 1049 of 1457 frames" },
      { exit: 1, open: false, threshold: null, reason: "cannot prove agreement >= 0.99 at any threshold" },
      { exit: 2, open: true, threshold: 0.87, reason: "agreement >= 0.9901 proven on 300 of 420 frames" },
    ];
    samples = parseMetrics(await metrics.registry.metrics());
    expect(metric(samples, "layercache_exit_open", { exit: "0" })).toBe(1);
    expect(metric(samples, "layercache_exit_open", { exit: "1" })).toBe(0);
    expect(metric(samples, "layercache_exit_threshold", { exit: "0" })).toBeCloseTo(0.941, 10);
    expect(metric(samples, "layercache_exit_threshold", { exit: "1" })).toBeUndefined();
    expect(metric(samples, "layercache_exit_threshold", { exit: "2" })).toBeCloseTo(0.87, 10);
    // A drift alarm closes every exit: the thresholds go.
    exits = exits.map((e) => ({ ...e, open: false, threshold: null }));
    samples = parseMetrics(await metrics.registry.metrics());
    expect(metric(samples, "layercache_exit_open")).toBe(0);
    expect(metric(samples, "layercache_exit_threshold", { exit: "0" })).toBeUndefined();
  });

  it("counts predictions answered from the exact cache", async () => {
    const metrics = idleMetrics();
    expect(metric(parseMetrics(await metrics.registry.metrics()), "layercache_exact_hits_total")).toBe(0);
    metrics.predicted(prediction({ exit: 1, exactHit: true, macs: 0, macsSaved: 1000 }));
    metrics.predicted(prediction({ exactHit: true, macs: 0, macsSaved: 1000 }));
    metrics.predicted(prediction({}));
    const samples = parseMetrics(await metrics.registry.metrics());
    expect(metric(samples, "layercache_exact_hits_total")).toBe(2);
    expect(metric(samples, "layercache_predictions_total")).toBe(3);
    expect(metric(samples, "layercache_macs_saved_total")).toBe(2000);
  });
});
