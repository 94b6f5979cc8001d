/**
 * The error a fetch ends with when it cannot complete: locating the file,
 * reading a part from its replicas or writing it at the destination. It names
 * the parts that failed; the destination stays resumable.
 */

/** A fetch that could not complete; the destination stays resumable. */
export class FetchError extends Error {
  readonly failedParts: number[];
  constructor(message: string, failedParts: number[], options?: ErrorOptions) {
    super(message, options);
    this.name = "FetchError";
    this.failedParts = failedParts;
  }
}
