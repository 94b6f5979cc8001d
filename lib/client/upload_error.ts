import { assertWithinQuota } from "../auth/writers_policy.ts";
import { ProtocolError } from "../wire/errors.ts";
import type { Identity } from "../auth/identity.ts";
import { type FileEntry, OPERATOR_OWNER } from "../state/manifest.ts";

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

/**
 * After `attempts` publishes each refused for copies freed under them (an rm
 * or a replace of the same bytes racing the upload): says so, and that the
 * same command sends only what is missing.
 */
export function giveUpOnMissingParts(refusal: ProtocolError, attempts: number): never {
  throw new ProtocolError(
    refusal.code,
    `${refusal.message}, after ${attempts} attempts that each sent them again (an rm or ` +
      `replace of the same bytes freed them meanwhile?); run the same command again: it sends ` +
      `only what is missing`,
    { cause: refusal },
  );
}

/**
 * Throws when a file of the name exists and the upload may not replace it:
 * no --replace, or someone else's (a preloaded file is the operator's, whose
 * key the instances know; `operatorKnown` false: an older one does not say).
 */
export function refuseExisting(
  existing: FileEntry | undefined,
  upload: { name: string; replace?: boolean; identity: Identity; operatorKnown: boolean },
): void {
  if (!existing) return;
  const { name, replace, identity } = upload;
  if (!replace) {
    throw new UploadError(
      `A file named ${JSON.stringify(name)} already exists; pass --replace to overwrite it ` +
        `(only your own files)`,
    );
  }
  const operators = existing.owner === OPERATOR_OWNER && upload.operatorKnown;
  if (existing.owner !== identity.owner && !operators) {
    throw new UploadError(
      `Cannot replace ${JSON.stringify(name)}: it belongs to ${existing.owner}, not to you ` +
        `(${identity.owner})` +
        (existing.owner === OPERATOR_OWNER ? "; pass --operator on the cluster's host" : ""),
    );
  }
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
