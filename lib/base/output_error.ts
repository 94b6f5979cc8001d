/**
 * Standard output could not be written (redirected to a full disk, say): a
 * failure of where the output goes, not of the command's own files.
 */
export class OutputError extends Error {
  constructor(cause: unknown) {
    super(`cannot write to standard output: ${(cause as Error)?.message ?? String(cause)}`, {
      cause,
    });
    this.name = "OutputError";
  }
}
