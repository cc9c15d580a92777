/**
 * docker-compose.yml cannot run on machines without Docker, so this checks
 * what can be checked statically: every variable it gives our containers is
 * one the config knows, and the shape the README promises is there.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { isKnownEnv, loadConfig } from "../../src/config/index.ts";
import { ROOT } from "../setup/discovery.ts";

interface Service {
  build?: unknown;
  image?: string;
  environment?: Record<string, string>;
  profiles?: string[];
  healthcheck?: unknown;
  deploy?: { replicas?: number };
}

const compose = parse(readFileSync(join(ROOT, "docker-compose.yml"), "utf8"), { merge: true }) as {
  services: Record<string, Service>;
};
const ours = Object.entries(compose.services).filter(([, s]) => s.build !== undefined);

describe("docker-compose.yml", () => {
  it("builds the worker, the producer and the tail from this repository", () => {
    expect(ours.map(([name]) => name).sort()).toEqual(["producer", "tail", "worker"]);
  });

  it("sets only environment variables the config schema knows, with valid values", () => {
    for (const [name, service] of ours) {
      const env = service.environment ?? {};
      expect(Object.keys(env).length, name).toBeGreaterThan(0);
      for (const key of Object.keys(env)) expect(isKnownEnv(key), `${name}: ${key}`).toBe(true);
      expect(() => loadConfig(env), name).not.toThrow();
    }
  });

  it("probes the worker's /healthz on the port it serves metrics on", () => {
    const worker = compose.services.worker!;
    const probe = JSON.stringify(worker.healthcheck);
    const port = loadConfig(worker.environment ?? {}).metricsPort;
    expect(typeof port).toBe("number");
    expect(probe).toContain(`http://127.0.0.1:${port}/healthz`);
  });

  it("runs two worker replicas behind healthchecks, and the demo under a profile", () => {
    expect(compose.services.worker?.deploy?.replicas).toBe(2);
    for (const name of ["kafka", "redis", "worker"])
      expect(compose.services[name]?.healthcheck).toBeDefined();
    expect(compose.services.producer?.profiles).toContain("demo");
    expect(compose.services.kafka?.image).toMatch(/^apache\/kafka:3\.9\./);
  });
});
