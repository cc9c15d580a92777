/**
 * The worker's HTTP endpoint: `GET /metrics` (Prometheus text format: the
 * worker's own registry plus the process metrics) and `GET /healthz` (200
 * with a small JSON body while the worker is healthy, 503 with the same body
 * otherwise). Listens on every interface, so a scraper in another container
 * can reach it; port 0 takes any free port (`port` says which).
 */
import { createServer } from "node:http";
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { Registry, collectDefaultMetrics } from "prom-client";
import { LayercacheError } from "../errors/index.ts";
import type { Logger } from "./logger.ts";

export interface HealthReport {
  healthy: boolean;
  /** One word for people and probes: starting, running, stopping, stopped, failed. */
  status: string;
  [detail: string]: unknown;
}

export interface TelemetrySources {
  /** The worker's own metrics (served with the process metrics). */
  registry: Registry;
  health: () => HealthReport;
}

let processMetrics: Registry | undefined;

/** CPU, memory, event loop, GC and handles of this process: one registry, however many workers it runs. */
export function processRegistry(): Registry {
  if (!processMetrics) {
    processMetrics = new Registry();
    collectDefaultMetrics({ register: processMetrics });
  }
  return processMetrics;
}

/** Both registries in the Prometheus text format. */
export async function scrape(registry: Registry): Promise<{ contentType: string; body: string }> {
  const merged = Registry.merge([processRegistry(), registry]);
  return { contentType: merged.contentType, body: await merged.metrics() };
}

export class TelemetryServer {
  private constructor(
    private readonly server: Server,
    /** The port it listens on (the one chosen, when asked for 0). */
    readonly port: number,
  ) {}

  static async start(port: number, sources: TelemetrySources, log: Logger): Promise<TelemetryServer> {
    // prom-client counts CPU time from when its metrics are made: make them now, not at the first scrape.
    processRegistry();
    const server = createServer((req, res) => {
      route(req, res, sources).catch((err: unknown) => {
        log.warn({ err, url: req.url }, "telemetry request failed");
        if (!res.headersSent) res.writeHead(500, { "content-type": "text/plain" });
        res.end("internal error\n");
      });
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, () => {
        server.off("error", reject);
        resolve();
      });
    }).catch((err: unknown) => {
      throw new LayercacheError("CONFIG_INVALID", `cannot serve metrics on port ${port}`, { cause: err });
    });
    server.on("error", (err) => log.warn({ err }, "telemetry server error"));
    return new TelemetryServer(server, (server.address() as AddressInfo).port);
  }

  /** Stops listening and drops open connections (a scraper's keep-alive must not hold a shutdown). */
  async close(): Promise<void> {
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }
}

async function route(req: IncomingMessage, res: ServerResponse, sources: TelemetrySources): Promise<void> {
  const path = new URL(req.url ?? "/", "http://localhost").pathname;
  if (req.method !== "GET" && req.method !== "HEAD") {
    res.writeHead(405, { allow: "GET, HEAD", "content-type": "text/plain" }).end("method not allowed\n");
    return;
  }
  if (path === "/metrics") {
    const { contentType, body } = await scrape(sources.registry);
    res.writeHead(200, { "content-type": contentType }).end(req.method === "HEAD" ? undefined : body);
    return;
  }
  if (path === "/healthz") {
    const report = sources.health();
    const body = JSON.stringify(report) + "\n";
    res
      .writeHead(report.healthy ? 200 : 503, {
        "content-type": "application/json",
        "cache-control": "no-store",
      })
      .end(req.method === "HEAD" ? undefined : body);
    return;
  }
  res.writeHead(404, { "content-type": "text/plain" }).end("not found: try /metrics or /healthz\n");
}
