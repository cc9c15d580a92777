/** Checking what the error taxonomy promises: the thrown error's class and code. */
import { expect } from "vitest";
import type { ErrorCode } from "../../src/errors/index.ts";
import { LayercacheError } from "../../src/errors/index.ts";

/**
 * The LayercacheError `fn` throws, checked to carry `code` when one is given.
 * Fails the test if `fn` throws anything else, or nothing.
 */
export function thrownBy(fn: () => unknown, code?: ErrorCode): LayercacheError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(LayercacheError);
    if (code) expect((err as LayercacheError).code).toBe(code);
    return err as LayercacheError;
  }
  throw new Error(`expected a LayercacheError${code ? ` (${code})` : ""}, nothing was thrown`);
}
