/** An upload that cannot complete; nothing was published. */
export class UploadError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "UploadError";
  }
}

/** Throws `cause` again as an UploadError: the upload's own trouble, not an instance's. */
export function asUploadError(cause: Error): never {
  throw new UploadError(cause.message, { cause });
}
