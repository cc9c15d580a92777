/**
 * What `npm run demo` needs running, brought up when missing: the project's
 * own Kafka broker (scripts/kafka/install.sh and start.sh) when nothing
 * answers on the configured brokers and they are on this machine, and a
 * private `redis-server` on a free port (nothing kept on disk) when nothing
 * answers on REDIS_URL. Each service says whether it was started here, and
 * stopping one that was already running does nothing.
 */
import { spawn } from "node:child_process";
import type { ChildProcess, SpawnOptions } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createConnection, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { LayercacheError } from "../errors/index.ts";

export const ROOT = fileURLToPath(new URL("../..", import.meta.url));

export interface LocalService {
  /** Brokers "h:p,h:p" or a redis:// URL. */
  address: string;
  /** Whether it was started here (and so is stopped by `stop`). */
  started: boolean;
  stop(): Promise<void>;
}

const LOCAL_HOSTS = new Set(["127.0.0.1", "localhost", "::1"]);
const nothing = async (): Promise<void> => undefined;

export function tcpAnswers(host: string, port: number, timeoutMs = 1_000): Promise<boolean> {
  return new Promise((done) => {
    const socket = createConnection({ host, port });
    const finish = (ok: boolean) => {
      socket.destroy();
      done(ok);
    };
    socket.setTimeout(timeoutMs, () => finish(false));
    socket.once("connect", () => finish(true));
    socket.once("error", () => finish(false));
  });
}

/** "host:port" (IPv6 in brackets allowed). */
function splitHostPort(address: string): [string, number] {
  const i = address.lastIndexOf(":");
  return [address.slice(0, i).replace(/^\[|\]$/g, ""), Number(address.slice(i + 1))];
}

/** A port nothing listens on right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/** The pid of the project's broker (scripts/kafka/common.sh) if it is running. */
export function projectBrokerPid(): number | undefined {
  const home = process.env.LAYERCACHE_KAFKA_HOME || join(ROOT, ".kafka");
  let pid: number;
  try {
    pid = Number(readFileSync(join(home, "broker.pid"), "utf8").trim());
  } catch {
    return undefined;
  }
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  try {
    process.kill(pid, 0);
    return pid;
  } catch (err) {
    // EPERM: alive, but someone else's.
    return (err as NodeJS.ErrnoException).code === "EPERM" ? pid : undefined;
  }
}

/** Runs a script to its end with output on our stderr; rejects unless it exits 0. */
function runScript(script: string, env: NodeJS.ProcessEnv): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn("bash", [join(ROOT, "scripts", "kafka", script)], {
      cwd: ROOT,
      env,
      stdio: ["ignore", "inherit", "inherit"],
    });
    child.once("error", reject);
    child.once("exit", (code, signal) =>
      code === 0 ? resolve() : reject(new Error(`${script} exited with ${signal ?? `code ${code}`}`)),
    );
  });
}

/**
 * The configured brokers if one answers; else the project's broker started on
 * the first one's port when it is on this machine. `say` narrates.
 */
export async function ensureKafka(brokers: string[], say: (line: string) => void): Promise<LocalService> {
  for (const b of brokers) {
    const [host, port] = splitHostPort(b);
    if (await tcpAnswers(host, port)) return { address: brokers.join(","), started: false, stop: nothing };
  }
  const [host, port] = splitHostPort(brokers[0]!);
  if (!LOCAL_HOSTS.has(host)) {
    throw new LayercacheError(
      "SERVICE_UNAVAILABLE",
      `no Kafka broker answers on ${brokers.join(",")}; start it, or unset KAFKA_BROKERS to let the demo ` +
        "run the project's own broker on 127.0.0.1:9092",
    );
  }
  const running = projectBrokerPid();
  if (running !== undefined) {
    // start.sh would find it and exit 0, and stopping "our" broker later would stop that one.
    throw new LayercacheError(
      "SERVICE_UNAVAILABLE",
      `no Kafka broker answers on ${brokers.join(",")}, and the project's broker is already running ` +
        `(pid ${running}) on another port: set KAFKA_BROKERS to its address`,
    );
  }
  const env = { ...process.env, LAYERCACHE_KAFKA_PORT: String(port) };
  say(`no Kafka broker answers on ${brokers.join(",")}: starting the project's broker (scripts/kafka)`);
  const stop = async () => {
    say("stopping the Kafka broker the demo started");
    await runScript("stop.sh", env).catch(() => undefined);
  };
  try {
    await runScript("install.sh", env);
    await runScript("start.sh", env);
  } catch (err) {
    // It may be half up (started, never ready): stop.sh is safe either way.
    await stop();
    throw new LayercacheError(
      "SERVICE_UNAVAILABLE",
      "could not start the project's Kafka broker (needs Java 17 and Maven; see the README and " +
        ".kafka/logs/server.log)",
      { cause: err },
    );
  }
  return { address: `127.0.0.1:${port}`, started: true, stop };
}

/** The configured Redis if it answers; else a private `redis-server` on a free port. */
export async function ensureRedis(redisUrl: string, say: (line: string) => void): Promise<LocalService> {
  const url = new URL(redisUrl);
  if (await tcpAnswers(url.hostname.replace(/^\[|\]$/g, ""), Number(url.port || 6379))) {
    return { address: redisUrl, started: false, stop: nothing };
  }
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), "layercache-redis-"));
  say(`nothing answers on the configured Redis: starting redis-server on 127.0.0.1:${port}`);
  const child = await spawnReady(
    "redis-server",
    ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
    { cwd: dir, stdio: "ignore" },
  ).catch((err: unknown) => {
    rmSync(dir, { recursive: true, force: true });
    const missing = (err as NodeJS.ErrnoException).code === "ENOENT";
    throw new LayercacheError(
      "SERVICE_UNAVAILABLE",
      missing
        ? "nothing answers on REDIS_URL and redis-server is not on the PATH: install Redis 7 " +
            "(apt-get install redis-server) or set REDIS_URL to a running server"
        : "nothing answers on REDIS_URL and a private redis-server did not start",
      { cause: err },
    );
  });
  const exited = new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once("exit", () => resolve());
  });
  for (let i = 0; i < 100 && !(await tcpAnswers("127.0.0.1", port, 200)); i++) {
    await new Promise((r) => setTimeout(r, 100));
  }
  const stop = async () => {
    child.kill("SIGTERM");
    await Promise.race([exited, new Promise((r) => setTimeout(r, 5_000))]);
    rmSync(dir, { recursive: true, force: true });
  };
  if (!(await tcpAnswers("127.0.0.1", port))) {
    await stop();
    throw new LayercacheError("SERVICE_UNAVAILABLE", `redis-server did not answer on port ${port}`);
  }
  return { address: `redis://127.0.0.1:${port}`, started: true, stop };
}

/** Spawns a program; rejects if it cannot be started at all (ENOENT and the like). */
function spawnReady(command: string, args: string[], options: SpawnOptions): Promise<ChildProcess> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, options);
    child.once("error", reject);
    child.once("spawn", () => resolve(child));
  });
}
