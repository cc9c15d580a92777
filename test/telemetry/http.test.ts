/** The telemetry endpoint on its own: /metrics in the text format, /healthz following the health report. */
import { afterEach, describe, expect, it } from "vitest";
import { Counter, Registry } from "prom-client";
import { TelemetryServer } from "../../src/telemetry/http.ts";
import type { HealthReport } from "../../src/telemetry/http.ts";
import { createLogger } from "../../src/telemetry/logger.ts";
import { healthz, metric, scrape } from "../helpers/prometheus.ts";

const log = createLogger({ level: "silent", workerId: "test" });

describe("TelemetryServer", () => {
  let server: TelemetryServer | undefined;
  afterEach(async () => {
    await server?.close();
    server = undefined;
  });

  it("serves the registry with the process metrics, and health as 200 or 503", async () => {
    const registry = new Registry();
    const counter = new Counter({ name: "layercache_test_total", help: "test", registers: [registry] });
    counter.inc(3);
    let report: HealthReport = { healthy: false, status: "starting" };
    server = await TelemetryServer.start(0, { registry, health: () => report }, log);
    expect(server.port).toBeGreaterThan(0);

    const samples = await scrape(server.port);
    expect(metric(samples, "layercache_test_total")).toBe(3);
    expect(metric(samples, "process_start_time_seconds")).toBeGreaterThan(0);
    expect(metric(samples, "process_cpu_user_seconds_total")).toBeGreaterThanOrEqual(0);
    expect(metric(samples, "nodejs_heap_size_used_bytes")).toBeGreaterThan(0);

    expect(await healthz(server.port)).toEqual({ status: 503, body: { healthy: false, status: "starting" } });
    report = { healthy: true, status: "running", inFlight: 0 };
    expect(await healthz(server.port)).toEqual({
      status: 200,
      body: { healthy: true, status: "running", inFlight: 0 },
    });

    const base = `http://127.0.0.1:${server.port}`;
    expect((await fetch(`${base}/nope`)).status).toBe(404);
    expect((await fetch(`${base}/metrics`, { method: "POST" })).status).toBe(405);
  });

  it("closes with a keep-alive connection open, and refuses connections afterwards", async () => {
    server = await TelemetryServer.start(
      0,
      { registry: new Registry(), health: () => ({ healthy: true, status: "running" }) },
      log,
    );
    const { port } = server;
    expect((await healthz(port)).status).toBe(200);
    await server.close();
    server = undefined;
    await expect(fetch(`http://127.0.0.1:${port}/healthz`)).rejects.toThrow();
  });

  it("names the port when it is taken", async () => {
    server = await TelemetryServer.start(
      0,
      { registry: new Registry(), health: () => ({ healthy: true, status: "running" }) },
      log,
    );
    await expect(
      TelemetryServer.start(
        server.port,
        { registry: new Registry(), health: () => ({ healthy: true, status: "x" }) },
        log,
      ),
    ).rejects.toMatchObject({
      code: "CONFIG_INVALID",
      message: expect.stringContaining(String(server.port)),
    });
  });
});
