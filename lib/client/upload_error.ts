import { assertWithinQuota } from "../auth/writers_policy.ts";

/** An upload that cannot complete; nothing was published. */
export class UploadError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "UploadError";
  }
}

/** Throws `cause` again as an UploadError: the upload's own trouble, not an instance's. */
export function asUploadError(cause: Error, midway = false): never {
  // The source deleted (or renamed) since the upload began: say that, not only "no such file".
  if (midway && cause instanceof Deno.errors.NotFound) {
    throw new UploadError(
      `the file went away while it was being uploaded (${cause.message}); nothing was published`,
      { cause },
    );
  }
  throw new UploadError(cause.message, { cause });
}

/** asUploadError() for the source opened again midway, when a part is read to be sent. */
export function asSourceGone(cause: Error): never {
  asUploadError(cause, true);
}

/**
 * Throws an UploadError when `size` more bytes would take `key` past its
 * quota (cluster.info's answer), as the publish would; nothing without one.
 */
export function refuseOverQuota(
  quota: { bytes: number; published: number } | undefined,
  key: string,
  size: number,
): void {
  if (!quota) return;
  try {
    assertWithinQuota("its published files hold", key, quota.bytes, quota.published, size);
  } catch (error) {
    throw new UploadError((error as Error).message, { cause: error });
  }
}
