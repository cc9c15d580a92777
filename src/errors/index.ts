/**
 * One error taxonomy for the whole worker. Code paths branch on `code` (a
 * closed set) and `retriable`, never on message text.
 */
export const ERROR_CODES = [
  /** Configuration from env or flags failed validation. */
  "CONFIG_INVALID",
  /** A model manifest or one of its files is missing or inconsistent. */
  "MANIFEST_INVALID",
  /** onnxruntime could not load or run a segment. */
  "MODEL_RUNTIME",
  /** A frame could not be decoded or does not fit the model input. */
  "FRAME_INVALID",
  /** Shared state read from Redis failed validation. */
  "STATE_INVALID",
  /** A publish was refused because this replica no longer holds the trainer lease. */
  "LEASE_LOST",
  /** Kafka or Redis could not be reached or answered with an error. */
  "SERVICE_UNAVAILABLE",
  /** The operation was abandoned because the process is shutting down. */
  "SHUTTING_DOWN",
  /**
   * Exactly-once delivery: an output was dropped, not written, because its input is answered by a
   * transaction already committed or left to another member (the input partition moved).
   */
  "SUPERSEDED",
  /** A bug: an invariant the code relies on did not hold. */
  "INTERNAL",
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

export interface LayercacheErrorOptions {
  cause?: unknown;
  /** Whether retrying the same operation later may succeed. Defaults to false. */
  retriable?: boolean;
  /** Structured details for logs and dead-letter headers. */
  details?: Record<string, string | number | boolean>;
}

export class LayercacheError extends Error {
  readonly code: ErrorCode;
  readonly retriable: boolean;
  readonly details: Readonly<Record<string, string | number | boolean>>;

  constructor(code: ErrorCode, message: string, options: LayercacheErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "LayercacheError";
    this.code = code;
    this.retriable = options.retriable ?? false;
    this.details = options.details ?? {};
  }
}

export function isLayercacheError(err: unknown, code?: ErrorCode): err is LayercacheError {
  return err instanceof LayercacheError && (code === undefined || err.code === code);
}
