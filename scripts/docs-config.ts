/**
 * Renders the config table (src/config/fields.ts) into README.md between the
 * `config-reference` markers. `npm run docs:config`; a test fails when the
 * README is out of date.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { format, resolveConfig } from "prettier";
import { FIELDS, flagName } from "../src/config/index.ts";
import type { FieldSpec } from "../src/config/index.ts";

export const README = join(fileURLToPath(new URL(".", import.meta.url)), "..", "README.md");
const BEGIN = "<!-- config-reference:begin -->";
const END = "<!-- config-reference:end -->";

export function renderConfigTable(): string {
  const rows = Object.entries(FIELDS).map(([key, spec]: [string, FieldSpec]) => {
    const def = spec.default !== undefined ? `\`${spec.default}\`` : spec.optional ? "(none)" : "(computed)";
    return `| \`${spec.env}\` | \`${flagName(key)}\` | ${def} | ${spec.doc} |`;
  });
  return ["| Environment | Flag | Default | Meaning |", "| --- | --- | --- | --- |", ...rows].join("\n");
}

/** The README with a fresh table, formatted as Prettier (run by `npm run lint`) would. */
export async function withConfigTable(readme: string): Promise<string> {
  const start = readme.indexOf(BEGIN);
  const end = readme.indexOf(END);
  if (start < 0 || end < start) throw new Error(`README.md lacks the ${BEGIN} ... ${END} markers`);
  const text =
    readme.slice(0, start + BEGIN.length) + "\n\n" + renderConfigTable() + "\n\n" + readme.slice(end);
  const options = (await resolveConfig(README)) ?? {};
  return format(text, { ...options, parser: "markdown" });
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  writeFileSync(README, await withConfigTable(readFileSync(README, "utf8")));
}
