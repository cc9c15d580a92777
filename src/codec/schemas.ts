/**
 * The Avro schemas of the wire format, read once from `schemas/*.avsc` at the
 * repository root (the .avsc files are the contract other producers and
 * consumers share; this module only parses them).
 *
 * A schema is identified on the wire by its fingerprint: SHA-256 of the
 * schema's Parsing Canonical Form (Avro specification), as lowercase hex. This
 * is what avsc's `type.fingerprint("sha256")` computes. The canonical form
 * drops docs, defaults and logical types, so editing those keeps the
 * fingerprint; any change that alters the binary encoding changes it.
 */
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import avro from "avsc";
import type { Schema, Type } from "avsc";
import { LayercacheError } from "../errors/index.ts";

/** Where the .avsc files live: `<repo>/schemas`. */
export const SCHEMA_DIR = join(import.meta.dirname, "..", "..", "schemas");

export type RecordName = "Frame" | "Prediction";

export interface WireSchema {
  name: RecordName;
  /** The parsed schema, used as the reader schema when decoding. */
  type: Type;
  /** SHA-256 of the Parsing Canonical Form, 64 lowercase hex digits. */
  fingerprint: string;
}

/** Avro-resolution view of a record written with some schema and read with another. */
export type Resolver = ReturnType<Type["createResolver"]>;

/** Builds an avsc type from a schema (JSON object or text). Throws what avsc throws. */
export function parseSchema(schema: Schema | string): Type {
  const parsed: unknown = typeof schema === "string" ? JSON.parse(schema) : schema;
  // Logical types are left as their underlying type: timestamp-millis stays a
  // plain number of epoch milliseconds, which is what the worker computes with.
  return avro.Type.forSchema(parsed as Schema);
}

/** A parsed type as is; a schema (object or JSON text) parsed. */
export function asType(schema: Type | Schema | string): Type {
  return schema instanceof avro.Type ? schema : parseSchema(schema);
}

// Hashing the canonical form is not free; a type's fingerprint never changes.
const fingerprints = new WeakMap<Type, string>();

export function fingerprintOf(type: Type): string {
  let hex = fingerprints.get(type);
  if (hex === undefined) {
    hex = type.fingerprint("sha256").toString("hex");
    fingerprints.set(type, hex);
  }
  return hex;
}

export function loadWireSchema(name: RecordName, dir = SCHEMA_DIR, file = `${name}.avsc`): WireSchema {
  const path = join(dir, file);
  let type: Type;
  try {
    type = parseSchema(readFileSync(path, "utf8"));
  } catch (err) {
    // A missing or broken schema file is a packaging bug, not a bad message.
    throw new LayercacheError("INTERNAL", `cannot load Avro schema ${path}`, { cause: err });
  }
  return { name, type, fingerprint: fingerprintOf(type) };
}

let frame: WireSchema | undefined;
let prediction: WireSchema | undefined;

/** The current Frame schema (loaded on first use). */
export function frameSchema(): WireSchema {
  frame ??= loadWireSchema("Frame");
  return frame;
}

/** The current Prediction schema (loaded on first use). */
export function predictionSchema(): WireSchema {
  prediction ??= loadWireSchema("Prediction");
  return prediction;
}

/** Where earlier versions of the schemas are kept: `<repo>/schemas/history/<Name>.v<N>.avsc`. */
export const SCHEMA_HISTORY_DIR = join(SCHEMA_DIR, "history");

const history = new Map<RecordName, Type[]>();

/**
 * The earlier versions of a record's schema, oldest first (loaded on first
 * use). Readers in fingerprint framing accept them as writer schemas, so
 * records written before a field was added still decode (schemas/README.md).
 */
export function previousSchemas(name: RecordName): readonly Type[] {
  let types = history.get(name);
  if (types === undefined) {
    const dir = SCHEMA_HISTORY_DIR;
    const pattern = new RegExp(`^${name}\\.v(\\d+)\\.avsc$`);
    let files: string[];
    try {
      files = readdirSync(dir);
    } catch (err) {
      throw new LayercacheError("INTERNAL", `cannot list earlier Avro schemas in ${dir}`, { cause: err });
    }
    const versions = files
      .map((file) => pattern.exec(file))
      .filter((m): m is RegExpExecArray => m !== null)
      .sort((a, b) => Number(a[1]) - Number(b[1]));
    types = versions.map((m) => loadWireSchema(name, dir, m[0]).type);
    history.set(name, types);
  }
  return types;
}
