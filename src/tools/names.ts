/** Names the tools make up: unique per run, so runs never share ids, groups or topics. */
import { randomBytes } from "node:crypto";

/** `<prefix>-<time in base 36>-<6 hex digits>`, safe in topic, group and frame-id names. */
export function runName(prefix: string): string {
  return `${prefix}-${Date.now().toString(36)}-${randomBytes(3).toString("hex")}`;
}
