/**
 * The control file a fetch keeps beside its destination: which parts of which
 * content are verified on disk, so a resume can trust it without re-hashing.
 * Written crash-safely (temp file, rename). Its claims are only as durable as
 * the data they vouch for: where the kernel names its boot (Linux), the file
 * records that id and a resume after a reboot (the only way written data that
 * was never flushed can be lost) re-hashes instead of trusting it, so no flush
 * is needed while data arrives; elsewhere the data is flushed before each save.
 */
import { every } from "../base/deadline.ts";
import { readJsonFile, writeFileAtomic } from "../base/fs_util.ts";
import { basename } from "../base/paths.ts";
import type { FileEntry } from "../state/manifest.ts";

export const STATE_FORMAT = "fts-fetch-state";
export const STATE_VERSION = 1;

export interface FetchState {
  name: string;
  contentId: string;
  size: number;
  partSize: number;
  /** Base name of the file the parts were written into. */
  workFile: string;
  verified: Bitmap;
  /**
   * The boot the claims were made in, when they were saved without flushing
   * the data first; absent when the data was flushed (valid across reboots).
   */
  bootId?: string | undefined;
  /**
   * The work file as it was when the claims were saved. The claims hold only
   * while it is unchanged: a file replaced or written since (by anyone) has
   * its parts hashed again.
   */
  stamp?: FileStamp | undefined;
}

/**
 * What tells a file apart from itself after a change: a write or truncate
 * moves mtime and ctime, a replacement changes the inode (or, copied over in
 * place, the times). ctime cannot be set back by users.
 */
export interface FileStamp {
  dev: number;
  ino: number;
  size: number;
  mtimeMs: number;
  ctimeMs: number;
}

/** The stamp of a file's stat, or undefined where the system does not give all of it. */
export function fileStamp(info: Deno.FileInfo): FileStamp | undefined {
  if (info.dev == null || info.ino == null || !info.mtime || !info.ctime) return undefined;
  return {
    dev: info.dev,
    ino: info.ino,
    size: info.size,
    mtimeMs: info.mtime.getTime(),
    ctimeMs: info.ctime.getTime(),
  };
}

/** Whether a control file's claims are about this file as it is now. */
export function stampMatches(state: FetchState, info: Deno.FileInfo): boolean {
  const now = fileStamp(info);
  const then = state.stamp;
  return now !== undefined && then !== undefined && now.dev === then.dev &&
    now.ino === then.ino && now.size === then.size && now.mtimeMs === then.mtimeMs &&
    now.ctimeMs === then.ctimeMs;
}

const BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id";

/** Read once per process: a batch of many files would otherwise read it for each. */
let _bootId: Promise<string | undefined> | undefined;

/** The kernel's id of the running boot, or undefined where it has none (not Linux). */
export function currentBootId(): Promise<string | undefined> {
  return _bootId ??= (async () => {
    try {
      const id = (await Deno.readTextFile(BOOT_ID_PATH)).trim();
      return id === "" ? undefined : id;
    } catch {
      return undefined;
    }
  })();
}

/**
 * Whether a loaded control file's claims still hold: those saved unflushed
 * hold only within the boot that made them.
 */
export function stateSurvived(state: FetchState, bootId: string | undefined): boolean {
  return state.bootId === undefined || state.bootId === bootId;
}

/** A fixed-size set of part indexes. */
export class Bitmap {
  readonly size: number;
  readonly bytes: Uint8Array;

  constructor(size: number, bytes?: Uint8Array) {
    this.size = size;
    this.bytes = bytes ?? new Uint8Array(Math.ceil(size / 8));
  }

  has(index: number): boolean {
    return (this.bytes[index >> 3]! & (1 << (index & 7))) !== 0;
  }

  set(index: number): void {
    this.bytes[index >> 3]! |= 1 << (index & 7);
  }

  delete(index: number): void {
    this.bytes[index >> 3]! &= ~(1 << (index & 7));
  }

  count(): number {
    let total = 0;
    for (let i = 0; i < this.size; i++) if (this.has(i)) total++;
    return total;
  }

  toBase64(): string {
    let binary = "";
    for (const byte of this.bytes) binary += String.fromCharCode(byte);
    return btoa(binary);
  }

  static fromBase64(size: number, text: string): Bitmap {
    const binary = atob(text);
    if (binary.length !== Math.ceil(size / 8)) throw new RangeError("Bitmap length mismatch");
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    return new Bitmap(size, bytes);
  }
}

export async function saveFetchState(path: string, state: FetchState): Promise<void> {
  // Claims tied to a boot are void after a crash anyway: no need to flush them.
  await writeFileAtomic(
    path,
    JSON.stringify({
      format: STATE_FORMAT,
      version: STATE_VERSION,
      name: state.name,
      contentId: state.contentId,
      size: state.size,
      partSize: state.partSize,
      workFile: state.workFile,
      verified: state.verified.toBase64(),
      ...(state.bootId !== undefined ? { bootId: state.bootId } : {}),
      ...(state.stamp !== undefined ? { stamp: state.stamp } : {}),
    }) + "\n",
    { durable: state.bootId === undefined },
  );
}

/** Loads a control file; undefined when absent or unusable (then the caller re-hashes). */
export async function loadFetchState(path: string): Promise<FetchState | undefined> {
  let value: unknown;
  try {
    value = await readJsonFile(path);
  } catch {
    return undefined;
  }
  const v = value as Record<string, unknown> | undefined;
  if (
    typeof v !== "object" || v === null || v.format !== STATE_FORMAT ||
    v.version !== STATE_VERSION || typeof v.name !== "string" ||
    typeof v.contentId !== "string" || typeof v.size !== "number" ||
    typeof v.partSize !== "number" || typeof v.workFile !== "string" ||
    typeof v.verified !== "string" || v.partSize < 1 ||
    (v.bootId !== undefined && typeof v.bootId !== "string")
  ) {
    return undefined;
  }
  const partCount = v.size === 0 ? 0 : Math.ceil(v.size / v.partSize);
  const stamp = _parseStamp(v.stamp);
  try {
    return {
      name: v.name,
      contentId: v.contentId,
      size: v.size,
      partSize: v.partSize,
      workFile: v.workFile,
      verified: Bitmap.fromBase64(partCount, v.verified),
      ...(typeof v.bootId === "string" ? { bootId: v.bootId } : {}),
      ...(stamp !== undefined ? { stamp } : {}),
    };
  } catch {
    return undefined;
  }
}

/** A stamp read back, or undefined (then the claims are not trusted). */
function _parseStamp(value: unknown): FileStamp | undefined {
  if (typeof value !== "object" || value === null) return undefined;
  const v = value as Record<string, unknown>;
  const keys = ["dev", "ino", "size", "mtimeMs", "ctimeMs"] as const;
  if (!keys.every((key) => typeof v[key] === "number" && Number.isFinite(v[key]))) {
    return undefined;
  }
  return {
    dev: v.dev as number,
    ino: v.ino as number,
    size: v.size as number,
    mtimeMs: v.mtimeMs as number,
    ctimeMs: v.ctimeMs as number,
  };
}

export interface ControlFileSaverOptions {
  /** The control file. */
  path: string;
  /** The file the parts are written into, and its path. */
  work: Deno.FsFile;
  workPath: string;
  entry: { name: string; contentId: string; size: number; partSize: number };
  /** The parts verified on disk; read at each save. */
  verified: Bitmap;
  bootId: string | undefined;
}

/**
 * A fetch working in the user's own shorter copy stretches it to full size
 * before the parts arrive. Stopped (Ctrl-C, a full disk, the file removed
 * from the cluster), it gives that back: the file ends where its own bytes
 * and the parts verified right after them end, so a copy that is not whole
 * never looks whole, and the parts verified past a gap are no longer
 * counted (the next run fetches them again).
 */
export function unstretch(
  file: Deno.FsFile,
  entry: FileEntry,
  originalSize: number,
  verified: Bitmap,
): void {
  if (originalSize >= entry.size) return;
  let end = originalSize;
  for (let index = Math.floor(end / entry.partSize); index < entry.parts.length; index++) {
    if (!verified.has(index)) break;
    end = Math.min(entry.size, (index + 1) * entry.partSize);
  }
  if (end >= entry.size) return;
  for (let index = Math.floor(end / entry.partSize); index < entry.parts.length; index++) {
    verified.delete(index);
  }
  file.truncateSync(end);
}

/**
 * Keeps the control file up to date while a fetch runs: every `intervalMs`
 * when a part was verified since the last save, and once more when the
 * fetch stops. A control file says which parts are right, and a later run
 * fetches the others without checking them: so none is written until every
 * part the destination holds has been checked (`checkComplete`); a fetch
 * stopped before that leaves the next run to check them again, and to find
 * right the parts fetched meanwhile.
 */
export class ControlFileSaver {
  /** Whether every part the destination held was checked; until then nothing is saved. */
  checkComplete = false;
  readonly #options: ControlFileSaverOptions;
  #dirty = false;
  #saving: Promise<void> = Promise.resolve();
  #stopTimer: () => void = () => {};

  constructor(options: ControlFileSaverOptions) {
    this.#options = options;
  }

  /** Something changed that the next periodic save should record. */
  markDirty(): void {
    this.#dirty = true;
  }

  /** Saves every `intervalMs` while something changed; a failed save is tried again. */
  start(intervalMs: number): void {
    this.#stopTimer = every(intervalMs, () => {
      if (!this.#dirty) return;
      this.#dirty = false;
      this.#saving = this.#saving.then(() => this.save()).catch(() => {
        this.#dirty = true;
      });
    });
  }

  /** Stops the periodic saves and waits for the one in progress. */
  async stop(): Promise<void> {
    this.#stopTimer();
    await this.#saving;
  }

  /** Records the parts verified now (nothing before the check is complete). */
  async save(): Promise<void> {
    if (!this.checkComplete) return;
    const { path, work, workPath, entry, verified, bootId } = this.#options;
    const snapshot = new Bitmap(verified.size, verified.bytes.slice());
    // Without a boot id a crash could not be told apart later, so the data
    // is flushed first; only parts verified before the flush are recorded.
    if (bootId === undefined) await work.syncData();
    // After the snapshot: a write in between only makes the stamp newer.
    const stamp = fileStamp(await work.stat());
    await saveFetchState(path, {
      name: entry.name,
      contentId: entry.contentId,
      size: entry.size,
      partSize: entry.partSize,
      workFile: basename(workPath),
      verified: snapshot,
      bootId,
      stamp,
    });
  }
}
