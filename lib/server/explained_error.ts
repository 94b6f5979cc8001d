/**
 * Unexpected errors an operator can act on, told to the client: an error
 * that is not a ProtocolError reaches the client as "Internal server error"
 * (errorHeader hides its details on purpose: they may say too much). Two
 * causes are worth saying, because the fix is the operator's and the client
 * can only pass it on: a full disk where the instance keeps its parts or the
 * manifest, and a manifest that no longer parses. Each becomes an INTERNAL
 * error whose one line says what failed, where, and what to do. And etcd out
 * of reach, which becomes UNAVAILABLE naming its endpoints (every instance
 * would say the same, so a client tries no other). Any other error of the
 * instance's own files is named by its kind only, for its operator to look up
 * in its log.
 */
import { EtcdUnavailableError } from "../etcd/etcd_errors.ts";
import { ProtocolError } from "../wire/errors.ts";
import { isDiskFull } from "../base/fs_util.ts";
import { isDamagedManifestError } from "../state/manifest_index.ts";

/** Where the instance keeps things, for the messages. */
export interface InstancePlaces {
  id: string;
  /** The instance's data directory ("DIR"), or undefined when unknown. */
  dataDir: string | undefined;
  /** Where the manifest lives: "DIR/manifest.json", or "etcd (cluster NAME)". */
  manifest: string | undefined;
}

/** Errors of the instance's own files (a part store made a file, say): its operator's to fix. */
const _FILE_ERRORS = [
  Deno.errors.NotADirectory,
  Deno.errors.IsADirectory,
  Deno.errors.PermissionDenied,
  Deno.errors.NotFound,
  Deno.errors.FilesystemLoop,
];

/** Causes followed down a `cause` chain before giving up. */
const MAX_CAUSE_DEPTH = 8;

/** `error` as an INTERNAL error that says what to do, if it is one of the causes above; else itself. */
export function explainedError(error: unknown, places: InstancePlaces): unknown {
  if (error instanceof ProtocolError) return error;
  let at: unknown = error;
  for (let depth = 0; depth < MAX_CAUSE_DEPTH && at instanceof Error; depth++) {
    if (at instanceof EtcdUnavailableError) {
      return new ProtocolError("UNAVAILABLE", at.message, { cause: error });
    }
    if (isDiskFull(at)) {
      return new ProtocolError(
        "INTERNAL",
        `Instance ${places.id} cannot write: the disk holding ${
          places.dataDir ?? "its data directory"
        } is full (${at.message}); free space on that disk (the instance's operator must), then retry`,
        { cause: error },
      );
    }
    if (isDamagedManifestError(at)) {
      return new ProtocolError(
        "INTERNAL",
        `Instance ${places.id} cannot read the manifest in ${
          places.manifest ?? "its data directory"
        }: ${at.message}; restore it from a backup (the instance's operator must; fts repair does not rebuild it)`,
        { cause: error },
      );
    }
    if (_FILE_ERRORS.some((kind) => at instanceof kind)) {
      // What and where stay in the instance's log (server.ts logs it): they may say too much.
      return new ProtocolError(
        "INTERNAL",
        `Instance ${places.id} cannot use its files (${at.name}); its operator must look at ` +
          `its log`,
        { cause: error },
      );
    }
    at = at.cause;
  }
  return error;
}
