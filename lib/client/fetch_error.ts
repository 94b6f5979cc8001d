/**
 * The error a fetch ends with when it cannot complete: locating the file,
 * reading a part from its replicas or writing it at the destination. It names
 * the parts that failed; the destination stays resumable.
 */

/** A fetch that could not complete; the destination stays resumable. */
export class FetchError extends Error {
  readonly failedParts: number[];
  /** Set when the file was removed (or renamed) or replaced by its owner as it was fetched. */
  readonly changed: "removed" | "replaced" | undefined;
  constructor(
    message: string,
    failedParts: number[],
    options?: ErrorOptions & { changed?: "removed" | "replaced" },
  ) {
    super(message, options);
    this.name = "FetchError";
    this.failedParts = failedParts;
    this.changed = options?.changed;
  }
}
