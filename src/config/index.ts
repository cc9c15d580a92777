export type { Config, FieldKey, FieldSpec } from "./fields.ts";
export { FIELDS, flagName } from "./fields.ts";
export type { RawFlags } from "./load.ts";
export { isKnownEnv, loadConfig, redactConfig } from "./load.ts";
