/**
 * Where fetch keeps its helper files beside the destination NAME: the
 * partial file, the control (state) file and the job lock, NAME plus a
 * suffix. A name the cluster accepts may be 255 bytes, the most a file
 * system allows for one name, which leaves no room for a suffix: then the
 * helper name is NAME cut short, a tilde and a hash of the whole NAME, so it
 * fits, stays the same from run to run (a resume finds it), and two long
 * names that share a beginning still get helpers of their own.
 */
import { lstatOrUndefined, removeQuietly, tempPathBeside } from "../base/fs_util.ts";
import { tryFileLock } from "../base/lock.ts";
import { basename, dirname, join } from "../base/paths.ts";
import { sha256HexSync } from "../hash/sha256.ts";
import { FETCH_HELPER_SUFFIXES, helperSuffixOf } from "../state/manifest.ts";
import { printable } from "../base/printable.ts";
import { FetchError } from "./fetch_error.ts";

/**
 * The partial file's, the control file's and the job lock's (held while a
 * fetch works on NAME in its directory; deleted at the end). No cluster file
 * may be named with one (validateNewFileName).
 */
export const [PARTIAL_SUFFIX, STATE_SUFFIX, LOCK_SUFFIX] = FETCH_HELPER_SUFFIXES;

/**
 * Throws when a file of the cluster cannot be fetched under its name, as it
 * ends in a helper suffix (stored before such names were refused): its
 * download would overwrite or delete another file's helper files.
 */
export function refuseHelperName(name: string): void {
  const suffix = helperSuffixOf(name);
  if (suffix === undefined) return;
  throw new FetchError(
    `Cannot fetch "${
      printable(name)
    }": names ending in ${suffix} are fetch's own helper files; its owner can rename it (fts mv)`,
    [],
  );
}

/** The longest file name (one path component) the file systems we run on take, in bytes. */
export const MAX_FILE_NAME_BYTES = 255;
/** Hex characters of the name's hash in a shortened helper name. */
const NAME_HASH_CHARS = 16;

const _encoder = new TextEncoder();

/** The path of `finalPath`'s helper file with `suffix`, within MAX_FILE_NAME_BYTES. */
export function helperPath(finalPath: string, suffix: string): string {
  const name = basename(finalPath);
  // A UTF-16 code unit is at most 3 bytes of UTF-8: most names need no encoding to tell.
  if ((name.length + suffix.length) * 3 <= MAX_FILE_NAME_BYTES) return finalPath + suffix;
  if (_encoder.encode(name + suffix).length <= MAX_FILE_NAME_BYTES) return finalPath + suffix;
  const tail = `~${sha256HexSync(name).slice(0, NAME_HASH_CHARS)}${suffix}`;
  let kept = "";
  let keptBytes = 0;
  // Whole characters only: a cut inside one would not be valid UTF-8.
  for (const char of name) {
    const bytes = _encoder.encode(char).length;
    if (keptBytes + bytes + tail.length > MAX_FILE_NAME_BYTES) break;
    kept += char;
    keptBytes += bytes;
  }
  return join(dirname(finalPath), kept + tail);
}

/**
 * Takes the flock of the partial file opened as `file`; false when a short
 * fetch (fetch_small.ts) holds it, or held it and has renamed it into place
 * since it was opened (then the lock is of the finished file: look again).
 */
export function holdsPartial(file: Deno.FsFile, partialPath: string): boolean {
  if (!file.tryLockSync(true)) return false;
  const held = file.statSync();
  const now = lstatOrUndefined(partialPath);
  return now?.ino === held.ino && now?.dev === held.dev;
}

/**
 * Removes a partial file that no fetch holds; false, leaving it, when one
 * does (or it cannot be removed).
 */
export function dropLeftoverPartial(partialPath: string): boolean {
  let file: Deno.FsFile;
  try {
    file = Deno.openSync(partialPath, { read: true, write: true });
  } catch {
    return false;
  }
  try {
    if (!holdsPartial(file, partialPath)) return false;
    Deno.removeSync(partialPath);
    return true;
  } catch {
    return false;
  } finally {
    file.close();
  }
}

/**
 * Removes `finalPath`'s partial file and control file unless a fetch holds
 * its lock (or a short fetch its partial file): for a file gone from the
 * cluster, there is nothing left to resume. Whether a partial file went
 * (false too when there was none: the fetch worked in the file itself).
 */
export function dropResumeFiles(finalPath: string): boolean {
  const release = tryFileLock(helperPath(finalPath, LOCK_SUFFIX));
  if (!release) return false;
  try {
    const partial = helperPath(finalPath, PARTIAL_SUFFIX);
    const held = lstatOrUndefined(partial) !== undefined;
    if (held && !dropLeftoverPartial(partial)) return false;
    removeQuietly(helperPath(finalPath, STATE_SUFFIX));
    return held;
  } finally {
    release();
  }
}

/**
 * The partial file as it will be worked in, given what lstat said of it
 * (`info`). One that shares its inode with another name (a hard link: `cp -al`
 * of a directory holding an interrupted download, say) first gets an inode of
 * its own: its bytes are copied into a new file renamed over it, so resuming
 * writes nothing into the other name's file. The copy no longer matches the
 * control file's stamp, so its parts are hashed again before they count.
 */
export function ownPartial(
  partialPath: string,
  info: Deno.FileInfo | undefined,
): Deno.FileInfo | undefined {
  if (!info?.isFile || info.nlink === null || info.nlink <= 1) return info;
  const temp = tempPathBeside(partialPath);
  try {
    Deno.copyFileSync(partialPath, temp);
    Deno.renameSync(temp, partialPath);
  } catch (cause) {
    removeQuietly(temp);
    throw new FetchError(
      `${partialPath} has other names (hard links) and could not be copied apart`,
      [],
      { cause },
    );
  }
  return lstatOrUndefined(partialPath);
}

/**
 * Throws unless each helper file (the partial file, the control file) that
 * exists is a regular file: never through a link, since a planted one would
 * have a fetch write (or trust) a file it chose.
 */
export function refuseOddHelpers(
  helpers: readonly (readonly [string, Deno.FileInfo | undefined])[],
): void {
  for (const [path, info] of helpers) {
    if (info && !info.isFile) {
      throw new FetchError(
        `${path} exists and is not a regular file${
          info.isSymlink ? " (a symbolic link)" : ""
        }; remove it and run the same command again`,
        [],
      );
    }
  }
}
