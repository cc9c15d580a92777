/**
 * Validation of a command's own options (beyond the config flags): a zod
 * object over what commander parsed, with every bad option named by its flag
 * in one CONFIG_INVALID error.
 */
import { z } from "zod";
import { flagName } from "../config/index.ts";
import { LayercacheError } from "../errors/index.ts";

/** Whole number in [min, max], from a flag's text. */
export const wholeNumber = (min: number, max = Number.MAX_SAFE_INTEGER) =>
  z.coerce
    .number({ error: "expected a number" })
    .int("expected a whole number")
    .min(min, `expected at least ${min}`)
    .max(max, `expected at most ${max}`);

/** Number above 0 (and finite), from a flag's text. */
export const positiveNumber = z.coerce
  .number({ error: "expected a number" })
  .refine((n) => Number.isFinite(n) && n > 0, "expected a number above 0");

export function parseOptions<S extends z.ZodType>(
  command: string,
  schema: S,
  opts: Record<string, unknown>,
): z.output<S> {
  const parsed = schema.safeParse(opts);
  if (parsed.success) return parsed.data;
  const problems = parsed.error.issues.map((issue) => {
    const key = issue.path[0];
    if (typeof key !== "string") return issue.message;
    const raw = opts[key];
    const got = typeof raw === "string" ? ` (got ${JSON.stringify(raw)})` : "";
    return `${flagName(key)}: ${issue.message}${got}`;
  });
  throw new LayercacheError(
    "CONFIG_INVALID",
    `invalid options for ${command}:\n  - ${problems.join("\n  - ")}`,
    { details: { problems: problems.length } },
  );
}
