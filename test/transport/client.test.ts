/** The kafkajs client options the config turns into: SASL as given, TLS from PEM files read at start. */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config/index.ts";
import { saslOptions, tlsOptions } from "../../src/transport/kafka/client.ts";

describe("Kafka client security options", () => {
  it("speaks PLAINTEXT without SASL by default", () => {
    const c = loadConfig({});
    expect(saslOptions(c)).toBeUndefined();
    expect(tlsOptions(c)).toBeUndefined();
  });

  it("passes the SASL mechanism and credentials through", () => {
    const c = loadConfig({
      LAYERCACHE_KAFKA_SASL_MECHANISM: "scram-sha-256",
      LAYERCACHE_KAFKA_SASL_USERNAME: "worker",
      LAYERCACHE_KAFKA_SASL_PASSWORD: "s3cret",
    });
    expect(saslOptions(c)).toEqual({ mechanism: "scram-sha-256", username: "worker", password: "s3cret" });
  });

  it("uses the system CAs, or reads the PEM files it is given", () => {
    expect(tlsOptions(loadConfig({ LAYERCACHE_KAFKA_SSL: "true" }))).toBe(true);
    const dir = mkdtempSync(join(tmpdir(), "layercache-tls-"));
    for (const f of ["ca", "cert", "key"]) writeFileSync(join(dir, `${f}.pem`), `${f} pem`);
    const c = loadConfig({
      LAYERCACHE_KAFKA_SSL: "true",
      LAYERCACHE_KAFKA_SSL_CA_FILE: join(dir, "ca.pem"),
      LAYERCACHE_KAFKA_SSL_CERT_FILE: join(dir, "cert.pem"),
      LAYERCACHE_KAFKA_SSL_KEY_FILE: join(dir, "key.pem"),
    });
    expect(tlsOptions(c)).toEqual({
      ca: "ca pem",
      cert: "cert pem",
      key: "key pem",
      rejectUnauthorized: true,
    });
    expect(() =>
      tlsOptions(
        loadConfig({ LAYERCACHE_KAFKA_SSL: "true", LAYERCACHE_KAFKA_SSL_CA_FILE: join(dir, "nope.pem") }),
      ),
    ).toThrow(/LAYERCACHE_KAFKA_SSL_CA_FILE: cannot read/);
  });
});
