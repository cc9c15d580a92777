import { describe, expect, it } from "vitest";
import { FIELDS, loadConfig, redactConfig } from "../../src/config/index.ts";
import { thrownBy } from "../helpers/errors.ts";

function problem(fn: () => unknown): string {
  return thrownBy(fn, "CONFIG_INVALID").message;
}

describe("loadConfig", () => {
  it("gives every field its documented default", () => {
    const c = loadConfig({});
    expect(c.kafkaBrokers).toEqual(["127.0.0.1:9092"]);
    expect(c.targetAgreement).toBe(0.99);
    expect(c.confidenceLevel).toBe(0.95);
    expect(c.auditRate).toBe(0.02);
    expect(c.cacheEnabled).toBe(true);
    expect(c.workerId).toMatch(/-\d+$/);
  });

  it("takes flags over environment over defaults", () => {
    const env = { LAYERCACHE_BATCH_MAX_FRAMES: "16", KAFKA_BROKERS: "a:1, b:2" };
    expect(loadConfig(env).batchMaxFrames).toBe(16);
    expect(loadConfig(env).kafkaBrokers).toEqual(["a:1", "b:2"]);
    expect(loadConfig(env, { batchMaxFrames: "8" }).batchMaxFrames).toBe(8);
  });

  it("names the field, its source and the value when one is bad", () => {
    expect(problem(() => loadConfig({ LAYERCACHE_AUDIT_RATE: "1.5" }))).toMatch(
      /LAYERCACHE_AUDIT_RATE: .*<=1 \(got "1.5"\)/,
    );
    expect(problem(() => loadConfig({}, { cacheEnabled: "maybe" }))).toMatch(
      /--cache-enabled: expected true/,
    );
    expect(problem(() => loadConfig({ KAFKA_BROKERS: "nohost" }))).toMatch(
      /KAFKA_BROKERS: expected host:port/,
    );
  });

  it("reports every bad field at once", () => {
    const msg = problem(() => loadConfig({ LAYERCACHE_AUDIT_RATE: "x", LAYERCACHE_BATCH_MAX_FRAMES: "0" }));
    expect(msg).toContain("LAYERCACHE_AUDIT_RATE");
    expect(msg).toContain("LAYERCACHE_BATCH_MAX_FRAMES");
  });

  it("rejects unknown LAYERCACHE_ variables, which are usually typos", () => {
    expect(problem(() => loadConfig({ LAYERCACHE_TARGET_AGREMENT: "0.9" }))).toContain(
      "LAYERCACHE_TARGET_AGREMENT: unknown setting",
    );
  });

  it("checks fields against each other", () => {
    expect(
      problem(() =>
        loadConfig({ LAYERCACHE_SESSION_TIMEOUT_MS: "9000", LAYERCACHE_HEARTBEAT_INTERVAL_MS: "4000" }),
      ),
    ).toMatch(/HEARTBEAT_INTERVAL_MS \(4000\) must be at most a third/);
    expect(problem(() => loadConfig({ LAYERCACHE_DEAD_LETTER_TOPIC: "layercache.frames" }))).toMatch(
      /must differ/,
    );
    expect(
      problem(() => loadConfig({ LAYERCACHE_IN_FLIGHT_MAX_FRAMES: "16", LAYERCACHE_BATCH_MAX_FRAMES: "32" })),
    ).toMatch(/IN_FLIGHT_MAX_FRAMES \(16\) must be at least LAYERCACHE_BATCH_MAX_FRAMES \(32\)/);
  });

  it("keeps secrets out of the printable config and out of error messages", () => {
    const c = loadConfig({ REDIS_URL: "redis://user:s3cret@cache:6379" });
    expect(JSON.stringify(redactConfig(c))).not.toContain("s3cret");
    expect(problem(() => loadConfig({ REDIS_URL: "http://user:s3cret@x" }))).not.toContain("s3cret");
  });

  it("serves metrics on a port, any free port (0), or not at all (off)", () => {
    expect(loadConfig({}).metricsPort).toBe(9464);
    expect(loadConfig({ LAYERCACHE_METRICS_PORT: "0" }).metricsPort).toBe(0);
    expect(loadConfig({ LAYERCACHE_METRICS_PORT: "off" }).metricsPort).toBe("off");
    expect(problem(() => loadConfig({ LAYERCACHE_METRICS_PORT: "none" }))).toMatch(
      /LAYERCACHE_METRICS_PORT: expected a port number \(0 for any free port\) or "off"/,
    );
  });

  it("delivers at least once unless told exactly-once", () => {
    expect(loadConfig({}).delivery).toBe("at-least-once");
    expect(loadConfig({ LAYERCACHE_DELIVERY: "exactly-once" }).delivery).toBe("exactly-once");
    expect(problem(() => loadConfig({ LAYERCACHE_DELIVERY: "at-most-once" }))).toContain(
      "LAYERCACHE_DELIVERY",
    );
  });

  it("chooses the exit heads' kind and the nearest-neighbour memory's size", () => {
    const c = loadConfig({
      LAYERCACHE_HEAD_KIND: "mlp+knn",
      LAYERCACHE_KNN_PER_CLASS: "32",
      LAYERCACHE_KNN_K: "5",
    });
    expect([c.headKind, c.knnPerClass, c.knnK]).toEqual(["mlp+knn", 32, 5]);
    expect(loadConfig({}).headKind).toBe("mlp");
    expect(problem(() => loadConfig({ LAYERCACHE_HEAD_KIND: "tree" }))).toContain("LAYERCACHE_HEAD_KIND");
    expect(problem(() => loadConfig({ LAYERCACHE_KNN_PER_CLASS: "0" }))).toContain(
      "LAYERCACHE_KNN_PER_CLASS",
    );
  });

  it("takes SASL and TLS settings only when they fit together, and masks the password", () => {
    const c = loadConfig({
      LAYERCACHE_KAFKA_SASL_MECHANISM: "scram-sha-512",
      LAYERCACHE_KAFKA_SASL_USERNAME: "worker",
      LAYERCACHE_KAFKA_SASL_PASSWORD: "s3cret",
      LAYERCACHE_KAFKA_SSL: "true",
      LAYERCACHE_KAFKA_SSL_CA_FILE: "ca.pem",
    });
    expect(c).toMatchObject({
      kafkaSaslMechanism: "scram-sha-512",
      kafkaSsl: true,
      kafkaSslCaFile: "ca.pem",
    });
    expect(redactConfig(c)).toMatchObject({ kafkaSaslUsername: "worker", kafkaSaslPassword: "***" });
    expect(JSON.stringify(redactConfig(c))).not.toContain("s3cret");
    expect(loadConfig({}).kafkaSaslPassword).toBeUndefined();
    expect(redactConfig(loadConfig({})).kafkaSaslPassword).toBeUndefined();

    const msg = problem(() =>
      loadConfig({
        LAYERCACHE_KAFKA_SASL_MECHANISM: "plain",
        LAYERCACHE_KAFKA_SASL_PASSWORD: "s3cret",
        LAYERCACHE_KAFKA_SSL_CERT_FILE: "client.pem",
      }),
    );
    expect(msg).toContain("LAYERCACHE_KAFKA_SASL_MECHANISM=plain needs LAYERCACHE_KAFKA_SASL_USERNAME");
    expect(msg).toContain("LAYERCACHE_KAFKA_SSL_CERT_FILE set but LAYERCACHE_KAFKA_SSL is false");
    expect(msg).toContain("LAYERCACHE_KAFKA_SSL_CERT_FILE and LAYERCACHE_KAFKA_SSL_KEY_FILE go together");
    expect(msg).not.toContain("s3cret");
    expect(problem(() => loadConfig({ LAYERCACHE_KAFKA_SASL_USERNAME: "worker" }))).toContain(
      "SASL credentials are set but LAYERCACHE_KAFKA_SASL_MECHANISM is none",
    );
  });

  it("documents every field", () => {
    for (const spec of Object.values(FIELDS)) {
      expect(spec.doc.length).toBeGreaterThan(10);
      expect(spec.env).toMatch(/^[A-Z][A-Z0-9_]+$/);
    }
  });
});
