/**
 * The sharing metrics of a worker, from the status its inference thread
 * reports: gauges follow the latest status, counters follow the thread's
 * totals (by difference at each scrape, so they never go down), and a worker
 * that does not share shows them all at 0.
 */
import { describe, expect, it } from "vitest";
import type { SharingStatus } from "../../src/pipeline/inference-protocol.ts";
import { WorkerMetrics } from "../../src/pipeline/metrics.ts";
import { metric, parseMetrics } from "../helpers/prometheus.ts";

const config = { workerId: "w1", delivery: "at-least-once" as const };

function status(over: Partial<SharingStatus> = {}): SharingStatus {
  return {
    training: false,
    holdingBack: false,
    redisConnected: true,
    snapshotVersion: 0,
    adopted: 0,
    published: 0,
    examplesForwarded: 0,
    examplesDropped: 0,
    examplesReceived: 0,
    auditsReceived: 0,
    driftAlarms: 0,
    examplesInvalid: 0,
    examplesRejected: 0,
    ...over,
  };
}

function metricsWith(
  sharing: () => SharingStatus | undefined,
  driftAlarms?: () => number,
  examplesRejected?: () => number,
): WorkerMetrics {
  return new WorkerMetrics(config, {
    inFlight: () => 0,
    pausedPartitions: () => 0,
    lag: () => new Map(),
    audit: () => [],
    model: () => undefined,
    sharing,
    ...(driftAlarms ? { driftAlarms } : {}),
    ...(examplesRejected ? { examplesRejected } : {}),
  });
}

describe("sharing metrics", () => {
  it("follow the inference thread's status and totals", async () => {
    let current = status({ examplesForwarded: 120, examplesDropped: 3, adopted: 2, snapshotVersion: 7 });
    const metrics = metricsWith(() => current);
    let samples = parseMetrics(await metrics.registry.metrics());
    expect(metric(samples, "layercache_trainer_lease_held")).toBe(0);
    expect(metric(samples, "layercache_redis_connected")).toBe(1);
    expect(metric(samples, "layercache_shared_snapshot_version")).toBe(7);
    expect(metric(samples, "layercache_examples_forwarded_total")).toBe(120);
    expect(metric(samples, "layercache_examples_dropped_total")).toBe(3);
    expect(metric(samples, "layercache_snapshots_adopted_total")).toBe(2);

    current = status({
      training: true,
      holdingBack: true,
      redisConnected: false,
      examplesForwarded: 150,
      examplesDropped: 40,
      examplesReceived: 64,
      auditsReceived: 5,
      driftAlarms: 1,
      examplesInvalid: 4,
      adopted: 2,
      published: 1,
      snapshotVersion: 9,
    });
    samples = parseMetrics(await metrics.registry.metrics());
    expect(metric(samples, "layercache_trainer_lease_held")).toBe(1);
    expect(metric(samples, "layercache_trainer_holding_back")).toBe(1);
    expect(metric(samples, "layercache_redis_connected")).toBe(0);
    expect(metric(samples, "layercache_shared_snapshot_version")).toBe(9);
    expect(metric(samples, "layercache_examples_forwarded_total")).toBe(150);
    expect(metric(samples, "layercache_examples_dropped_total")).toBe(40);
    expect(metric(samples, "layercache_examples_received_total")).toBe(64);
    expect(metric(samples, "layercache_fleet_audits_received_total")).toBe(5);
    expect(metric(samples, "layercache_snapshots_published_total")).toBe(1);
    expect(metric(samples, "layercache_examples_invalid_total")).toBe(4);
  });

  it("count drift alarms from the worker's total, and never go down", async () => {
    let alarms = 2;
    const metrics = metricsWith(
      () => undefined,
      () => alarms,
    );
    expect(metric(parseMetrics(await metrics.registry.metrics()), "layercache_drift_alarms_total")).toBe(2);
    alarms = 3;
    expect(metric(parseMetrics(await metrics.registry.metrics()), "layercache_drift_alarms_total")).toBe(3);
    // A total that goes back (a restarted thread) does not take the counter back.
    alarms = 1;
    expect(metric(parseMetrics(await metrics.registry.metrics()), "layercache_drift_alarms_total")).toBe(3);
    const none = parseMetrics(await metricsWith(() => undefined).registry.metrics());
    expect(metric(none, "layercache_drift_alarms_total")).toBe(0);
  });

  it("count the examples the trainer left out from the worker's total", async () => {
    let rejected = 5;
    const metrics = metricsWith(
      () => undefined,
      undefined,
      () => rejected,
    );
    const read = async () =>
      metric(parseMetrics(await metrics.registry.metrics()), "layercache_examples_rejected_total");
    expect(await read()).toBe(5);
    rejected = 7;
    expect(await read()).toBe(7);
    expect(
      metric(
        parseMetrics(await metricsWith(() => undefined).registry.metrics()),
        "layercache_examples_rejected_total",
      ),
    ).toBe(0);
  });

  it("are all 0 on a worker that does not share", async () => {
    const samples = parseMetrics(await metricsWith(() => undefined).registry.metrics());
    for (const name of [
      "layercache_trainer_lease_held",
      "layercache_redis_connected",
      "layercache_shared_snapshot_version",
      "layercache_examples_forwarded_total",
      "layercache_examples_dropped_total",
      "layercache_examples_received_total",
      "layercache_examples_invalid_total",
      "layercache_fleet_audits_received_total",
      "layercache_snapshots_adopted_total",
      "layercache_snapshots_published_total",
    ]) {
      expect(metric(samples, name), name).toBe(0);
    }
  });
});
