import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { README, withConfigTable } from "../../scripts/docs-config.ts";

describe("README", () => {
  const readme = readFileSync(README, "utf8");

  it("opens with the two commands that work on a fresh machine", () => {
    const head = readme.split("\n").slice(0, 12).join("\n");
    expect(head).toContain("npm ci && npm run demo");
    expect(head).toContain("npm test");
  });

  it("has the config reference of the current schema (npm run docs:config)", async () => {
    expect(readme).toBe(await withConfigTable(readme));
  });
});
