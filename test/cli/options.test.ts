/**
 * The options of produce, tail and demo as commander hands them over
 * (strings, booleans): defaults, conversions, and one clear CONFIG_INVALID
 * error naming every bad flag.
 */
import { describe, expect, it } from "vitest";
import { parseDemoOptions } from "../../src/cli/demo.ts";
import { parseProduceOptions } from "../../src/cli/produce.ts";
import { parseTailOptions } from "../../src/cli/tail.ts";
import { thrownBy } from "../helpers/errors.ts";

describe("produce options", () => {
  it("defaults to the test split, no pacing, no shuffle", () => {
    expect(parseProduceOptions({})).toEqual({ source: "fashion-mnist", shuffle: false });
  });

  it("converts numbers and ignores the config flags next to them", () => {
    const o = parseProduceOptions({
      count: "300",
      rate: "12.5",
      shuffle: true,
      seed: "7",
      source: "/data/images",
      idPrefix: "cam-1",
      kafkaBrokers: "h:1",
    });
    expect(o).toEqual({
      count: 300,
      rate: 12.5,
      shuffle: true,
      seed: 7,
      source: "/data/images",
      idPrefix: "cam-1",
    });
  });

  it("names every bad flag with what it got", () => {
    const err = thrownBy(
      () => parseProduceOptions({ count: "0", rate: "fast", idPrefix: "a b" }),
      "CONFIG_INVALID",
    );
    expect(err.message).toContain("invalid options for layercache produce");
    expect(err.message).toContain('--count: expected at least 1 (got "0")');
    expect(err.message).toContain('--rate: expected a number (got "fast")');
    expect(err.message).toContain('--id-prefix: letters, digits and . _ : / - only, at most 128 (got "a b")');
    expect(thrownBy(() => parseProduceOptions({ count: "1.5" })).message).toContain(
      "--count: expected a whole number",
    );
    expect(thrownBy(() => parseProduceOptions({ rate: "-3" })).message).toContain(
      "--rate: expected a number above 0",
    );
    expect(thrownBy(() => parseProduceOptions({ rate: "Infinity" })).message).toContain("--rate");
  });

  it("takes --seed only with --shuffle", () => {
    expect(thrownBy(() => parseProduceOptions({ seed: "3" })).message).toContain(
      "--seed: only used with --shuffle",
    );
  });
});

describe("tail options", () => {
  it("defaults: throwaway group, new predictions only, no limit, a table", () => {
    expect(parseTailOptions({})).toEqual({ fromBeginning: false, json: false });
  });

  it("converts and checks", () => {
    expect(
      parseTailOptions({ expect: "300", timeout: "2.5", fromBeginning: true, json: true, group: "g.1" }),
    ).toEqual({ expect: 300, timeout: 2.5, fromBeginning: true, json: true, group: "g.1" });
    const err = thrownBy(() => parseTailOptions({ expect: "many", timeout: "0", group: "a/b" }));
    expect(err.message).toContain("--expect: expected a number");
    expect(err.message).toContain("--timeout: expected a number above 0");
    expect(err.message).toContain("--group:");
  });
});

describe("demo options", () => {
  it("defaults to the whole split, two workers, ten minutes", () => {
    expect(parseDemoOptions({})).toEqual({ count: 10_000, workers: 2, timeout: 600, keepTopics: false });
    expect(thrownBy(() => parseDemoOptions({ workers: "0" })).message).toContain(
      "--workers: expected at least 1",
    );
  });
});
