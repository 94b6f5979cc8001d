import { dirname, join } from "./paths.ts";

/** True when the path exists (any kind of entry). */
export async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

/**
 * What is at `path` (links not followed), or undefined when nothing is (also
 * when a directory on the way is a file: nothing can be there). Synchronous,
 * as are the other per-file steps of a fetch: a metadata call answered from
 * the kernel's caches costs less than handing it to one of Deno's I/O
 * threads and back (an async open+fstat+close took 77 us here, the same
 * calls made synchronously 10 us), and a batch of 10,000 small files makes a
 * dozen such calls per file.
 */
export function lstatOrUndefined(path: string): Deno.FileInfo | undefined {
  try {
    return Deno.lstatSync(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    if (error instanceof Deno.errors.NotADirectory) return undefined;
    throw error;
  }
}

/** Removes the file at `path`, best effort: synchronously, as lstatOrUndefined says why. */
export function removeQuietly(path: string): void {
  try {
    Deno.removeSync(path);
  } catch {
    // Absent already, or not ours to remove: nothing to do either way.
  }
}

/** A temp name beside `path`, unique per process and call. */
export function tempPathBeside(path: string): string {
  const random = crypto.getRandomValues(new Uint32Array(1))[0]!.toString(36);
  return join(dirname(path), `.${Deno.pid}.${random}.tmp`);
}

/**
 * Removes temp files that `tempPathBeside` made in `dir` for processes that
 * are gone (a write cut off by a kill). Returns how many it removed.
 */
export async function removeStaleTemps(dir: string): Promise<number> {
  let removed = 0;
  try {
    for await (const entry of Deno.readDir(dir)) {
      const match = /^\.(\d+)\.[0-9a-z]+\.tmp$/.exec(entry.name);
      if (!entry.isFile || !match || processAlive(Number(match[1]))) continue;
      await Deno.remove(join(dir, entry.name)).catch(() => {});
      removed++;
    }
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  return removed;
}

/** Flushes a directory entry change to disk; a no-op where the OS refuses. */
export async function syncDir(dir: string): Promise<void> {
  try {
    const handle = await Deno.open(dir, { read: true });
    try {
      await handle.sync();
    } finally {
      handle.close();
    }
  } catch {
    // Some filesystems refuse fsync on a directory; the rename is still atomic.
  }
}

/**
 * Writes a file crash-safely: temp file, fsync, rename over the target, fsync
 * the directory. A reader sees the old content or the new, never half.
 * `durable: false` skips both fsyncs: still never half-written for readers
 * and killed processes, but a power loss may keep the old content or leave
 * an empty file (for files whose readers can tell and cope).
 */
export async function writeFileAtomic(
  path: string,
  data: Uint8Array | string,
  options: { mode?: number; durable?: boolean } = {},
): Promise<void> {
  const durable = options.durable ?? true;
  const temp = tempPathBeside(path);
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  const file = await Deno.open(temp, {
    write: true,
    createNew: true,
    ...(options.mode !== undefined ? { mode: options.mode } : {}),
  });
  try {
    let done = 0;
    while (done < bytes.length) done += await file.write(bytes.subarray(done));
    if (durable) await file.sync();
  } catch (error) {
    file.close();
    await Deno.remove(temp).catch(() => {});
    throw error;
  }
  file.close();
  try {
    await Deno.rename(temp, path);
  } catch (error) {
    await Deno.remove(temp).catch(() => {});
    throw error;
  }
  if (durable) await syncDir(dirname(path));
}

/** Reads JSON from a file, or returns undefined when it does not exist. */
export async function readJsonFile(path: string): Promise<unknown | undefined> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
  try {
    return JSON.parse(text);
  } catch (cause) {
    throw new SyntaxError(`File ${path} is not valid JSON`, { cause });
  }
}

/** True when a process with this pid exists (Linux: /proc). */
export function processAlive(pid: number): boolean {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    // Field 3 is the state; a zombie (Z) or dead (X) process is not alive.
    const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
    return state !== "Z" && state !== "X";
  } catch {
    return false;
  }
}

/**
 * Whether process `pid` holds a flock on the file at `path`, as Linux's
 * /proc/locks says: false when there is no such file (nobody holds it),
 * undefined where it cannot be told (no /proc/locks). A pid recorded in a
 * file outlives its process, and may then be any other process's; a lock
 * dies with the process that took it.
 */
export function holdsFlock(pid: number, path: string): boolean | undefined {
  const inode = lstatOrUndefined(path)?.ino;
  if (inode === undefined) return false;
  let locks: string;
  try {
    locks = Deno.readTextFileSync("/proc/locks");
  } catch {
    return undefined;
  }
  if (inode === null) return undefined;
  // "1: FLOCK  ADVISORY  WRITE 12345 fe:00:2146416 0 EOF": the pid, then MAJOR:MINOR:INODE.
  return locks.split("\n").some((line) => {
    const fields = line.trim().split(/\s+/);
    return fields[1] === "FLOCK" && Number(fields[4]) === pid &&
      fields[5]?.split(":")[2] === String(inode);
  });
}

/** The command line of a process, or "" when it is gone. */
export function processCommandLine(pid: number): string {
  try {
    return Deno.readTextFileSync(`/proc/${pid}/cmdline`).split("\0").join(" ");
  } catch {
    return "";
  }
}

/** Whether `error` itself (not its causes) says a disk is full, or a disk quota used up. */
export function isDiskFull(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  const code = (error as { code?: unknown }).code;
  return code === "ENOSPC" || code === "EDQUOT" || /No space left on device/.test(error.message);
}
