/**
 * How an Avro record travels in a Kafka message. Two framings:
 *
 * - registry: the Confluent Schema Registry wire format — magic byte 0x00, the
 *   writer schema's registry id as 4 bytes big-endian, then the Avro binary.
 *   Used when a registry is configured; ids are resolved through a
 *   `SchemaRegistry` the caller supplies (the HTTP client lives elsewhere).
 * - fingerprint: the bare Avro binary, with the Kafka header
 *   `layercache-schema` naming the writer schema by its fingerprint (hex, see
 *   schemas.ts). No registry needed.
 *
 * The reader always decodes into its own (current) schema; a different but
 * known writer schema is bridged with Avro schema resolution.
 *
 * Every rejection is a `FRAME_INVALID` LayercacheError whose `details.reason`
 * is one of `FRAME_INVALID_REASONS`: the transport copies it into dead-letter
 * headers, so those strings are part of the wire contract. Never rename one.
 */
import type { Schema, Type } from "avsc";
import type { ErrorCode } from "../errors/index.ts";
import { LayercacheError, isLayercacheError } from "../errors/index.ts";
import type { Resolver, WireSchema } from "./schemas.ts";
import { asType, fingerprintOf } from "./schemas.ts";

export const FRAME_INVALID_REASONS = [
  /** The message has no value (or a zero-length one, or is a tombstone). */
  "empty",
  /** The message, or the pixels it decodes to, exceeds the configured byte limit. */
  "oversized",
  /** Registry framing expected, but the first byte is not 0x00. */
  "bad-magic",
  /** Fingerprint framing expected, but the `layercache-schema` header is absent. */
  "missing-header",
  /** The schema id or fingerprint names no schema this reader knows. */
  "unknown-schema",
  /** The writer schema is known but cannot be resolved to the reader's. */
  "incompatible-schema",
  /** The Avro body is not a valid record: garbage, truncated, or followed by trailing bytes. */
  "undecodable",
  /** A field decoded but its value is out of range (empty id, negative label, ...). */
  "invalid-field",
  /** The frame's encoding is one this reader cannot decode. */
  "unknown-encoding",
  /** The PNG or JPEG payload is corrupt. */
  "image-decode-failed",
  /** Width, height or channels are out of range, disagree with the payload, or cannot be fit to the model. */
  "bad-dimensions",
  /** RAW8 pixels are fewer than width x height x channels. */
  "truncated-pixels",
] as const;

export type FrameInvalidReason = (typeof FRAME_INVALID_REASONS)[number];

/** Kafka header carrying the writer schema fingerprint in fingerprint framing. */
export const SCHEMA_HEADER = "layercache-schema";
/** First byte of every registry-framed message. */
export const MAGIC_BYTE = 0x00;
const REGISTRY_PREFIX = 5;

export function frameInvalid(
  reason: FrameInvalidReason,
  message: string,
  details: Record<string, string | number | boolean> = {},
): LayercacheError {
  return new LayercacheError("FRAME_INVALID", message, { details: { ...details, reason } });
}

/** The reason of a FRAME_INVALID error (for dead-letter headers); undefined for any other error. */
export function invalidReason(err: unknown): FrameInvalidReason | undefined {
  if (!isLayercacheError(err, "FRAME_INVALID")) return undefined;
  const reason = err.details.reason;
  return FRAME_INVALID_REASONS.find((r) => r === reason);
}

/** Header values as kafkajs hands them over (a repeated header arrives as an array). */
export type HeaderValue = Buffer | string | ReadonlyArray<Buffer | string> | undefined;
export type MessageHeaders = Readonly<Record<string, HeaderValue>>;

/** Resolves Confluent schema ids to writer schemas. */
export interface SchemaRegistry {
  /** The schema registered under `id`, or undefined when this reader does not know it (yet). */
  writerType(id: number): Type | undefined;
}

/** A registry held in memory: for tests, and as the cache behind a real registry client. */
export class StaticSchemaRegistry implements SchemaRegistry {
  private readonly types = new Map<number, Type>();

  constructor(entries: Iterable<readonly [number, Type | Schema | string]> = []) {
    for (const [id, schema] of entries) this.register(id, schema);
  }

  register(id: number, schema: Type | Schema | string): this {
    checkSchemaId(id);
    this.types.set(id, asType(schema));
    return this;
  }

  writerType(id: number): Type | undefined {
    return this.types.get(id);
  }
}

export interface EnvelopeOptions {
  /** Messages longer than this are rejected unread. */
  maxMessageBytes: number;
  /** When set, messages must use registry framing and ids resolve here. */
  registry?: SchemaRegistry;
  /** Older writer schemas accepted in fingerprint framing, besides the reader's own. */
  writerSchemas?: readonly Type[];
}

export type Framing = { kind: "fingerprint" } | { kind: "registry"; schemaId: number };
export const FINGERPRINT_FRAMING: Framing = { kind: "fingerprint" };

export interface EncodedMessage {
  value: Buffer;
  headers: Record<string, string>;
}

function checkSchemaId(id: number): void {
  // Confluent ids are positive Java ints.
  if (!Number.isInteger(id) || id < 0 || id > 0x7fffffff) {
    throw new LayercacheError("INTERNAL", `schema registry id ${id} is not a 31-bit integer`);
  }
}

/**
 * Serialises `record` with `schema`. An invalid record throws `code`: FRAME_INVALID
 * (reason invalid-field) for producer input, INTERNAL for what the worker built itself.
 */
export function encodeEnvelope(
  schema: WireSchema,
  record: unknown,
  framing: Framing,
  code: Extract<ErrorCode, "FRAME_INVALID" | "INTERNAL"> = "FRAME_INVALID",
): EncodedMessage {
  const bad: string[] = [];
  schema.type.isValid(record, { errorHook: (path) => bad.push(path.join(".") || "(root)") });
  if (bad.length > 0) {
    const message = `${schema.name} fields do not match the schema: ${bad.join(", ")}`;
    throw code === "FRAME_INVALID"
      ? frameInvalid("invalid-field", message, { field: bad[0]! })
      : new LayercacheError("INTERNAL", message);
  }
  const body = schema.type.toBuffer(record);
  if (framing.kind === "fingerprint")
    return { value: body, headers: { [SCHEMA_HEADER]: schema.fingerprint } };
  checkSchemaId(framing.schemaId);
  const prefix = Buffer.alloc(REGISTRY_PREFIX);
  prefix.writeUInt8(MAGIC_BYTE, 0);
  prefix.writeUInt32BE(framing.schemaId, 1);
  return { value: Buffer.concat([prefix, body]), headers: {} };
}

/**
 * Unwraps and decodes one message into a record of the reader's schema (an
 * avsc record object; the caller checks field values). Throws FRAME_INVALID.
 */
export function decodeEnvelope(
  reader: WireSchema,
  value: Buffer | null | undefined,
  headers: MessageHeaders | undefined,
  options: EnvelopeOptions,
): unknown {
  if (!value || value.length === 0) throw frameInvalid("empty", `empty ${reader.name} message`);
  if (value.length > options.maxMessageBytes) {
    throw frameInvalid(
      "oversized",
      `${reader.name} message of ${value.length} bytes exceeds the limit of ${options.maxMessageBytes}`,
      { bytes: value.length },
    );
  }
  const { writer, body } = options.registry
    ? unwrapRegistry(reader, value, options.registry)
    : unwrapFingerprint(reader, value, headers, options.writerSchemas ?? []);
  return readBody(reader, writer, body);
}

function unwrapRegistry(
  reader: WireSchema,
  value: Buffer,
  registry: SchemaRegistry,
): { writer: Type; body: Buffer } {
  if (value[0] !== MAGIC_BYTE) {
    throw frameInvalid("bad-magic", `${reader.name} message starts with 0x${hex2(value[0]!)}, not 0x00`);
  }
  if (value.length < REGISTRY_PREFIX) {
    throw frameInvalid("undecodable", `${reader.name} message too short for a schema id`);
  }
  const id = value.readUInt32BE(1);
  const writer = registry.writerType(id);
  if (!writer) throw frameInvalid("unknown-schema", `unknown schema id ${id}`, { schemaId: id });
  return { writer, body: value.subarray(REGISTRY_PREFIX) };
}

function unwrapFingerprint(
  reader: WireSchema,
  value: Buffer,
  headers: MessageHeaders | undefined,
  known: readonly Type[],
): { writer: Type; body: Buffer } {
  const fingerprint = headerText(headers?.[SCHEMA_HEADER]);
  if (fingerprint === undefined) {
    throw frameInvalid("missing-header", `${reader.name} message has no ${SCHEMA_HEADER} header`);
  }
  const wanted = fingerprint.trim().toLowerCase();
  const writer = wanted === reader.fingerprint ? reader.type : known.find((t) => fingerprintOf(t) === wanted);
  if (!writer) {
    throw frameInvalid("unknown-schema", `unknown ${reader.name} schema fingerprint ${clip(fingerprint)}`, {
      fingerprint: clip(fingerprint),
    });
  }
  return { writer, body: value };
}

/** A single header value as text; a header repeated with different values counts as unknown. */
function headerText(value: HeaderValue): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value === "string" || Buffer.isBuffer(value)) return value.toString();
  const texts = new Set(value.map((v) => v.toString()));
  if (texts.size === 0) return undefined;
  if (texts.size > 1) {
    throw frameInvalid("unknown-schema", `${SCHEMA_HEADER} header repeated with different values`);
  }
  return [...texts][0];
}

// One resolver per (reader, writer) pair: building one walks both schemas.
const resolvers = new WeakMap<Type, WeakMap<Type, Resolver>>();

function resolverFor(reader: WireSchema, writer: Type): Resolver | undefined {
  if (writer === reader.type || fingerprintOf(writer) === reader.fingerprint) return undefined;
  let byWriter = resolvers.get(reader.type);
  if (!byWriter) resolvers.set(reader.type, (byWriter = new WeakMap()));
  let resolver = byWriter.get(writer);
  if (!resolver) {
    try {
      resolver = reader.type.createResolver(writer);
    } catch (err) {
      throw frameInvalid(
        "incompatible-schema",
        `writer schema ${fingerprintOf(writer).slice(0, 16)} cannot be read as the current ${reader.name}: ${message(err)}`,
      );
    }
    byWriter.set(writer, resolver);
  }
  return resolver;
}

function readBody(reader: WireSchema, writer: Type, body: Buffer): unknown {
  const resolver = resolverFor(reader, writer);
  try {
    // fromBuffer rejects both truncated input and trailing bytes.
    const record: unknown = reader.type.fromBuffer(body, resolver);
    return record;
  } catch (err) {
    throw frameInvalid("undecodable", `${reader.name} Avro body does not decode: ${message(err)}`);
  }
}

const message = (err: unknown) => (err instanceof Error ? err.message : String(err));
const hex2 = (byte: number) => byte.toString(16).padStart(2, "0");
// Header text is attacker-controlled: keep what ends up in logs short.
const clip = (s: string) => (s.length > 80 ? `${s.slice(0, 80)}...` : s);
