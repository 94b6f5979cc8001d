/**
 * One instance's part store. Parts are content-addressed: the file is named by
 * its SHA-256, under a two-hex-digit fan-out directory. A part becomes visible
 * only after its digest checked out (temp file, verify, rename). Names from the
 * network are never used as paths: only a validated digest is.
 */
import { ProtocolError } from "../wire/errors.ts";
import { processAlive, syncDir } from "../base/fs_util.ts";
import { join } from "../base/paths.ts";
import { DIGEST_PATTERN } from "../hash/digest_patterns.ts";
import { type Sha256, sha256Hasher } from "../hash/sha256.ts";
import { formatDuration } from "../base/units.ts";
import { raceDeadline } from "../base/deadline.ts";

/** Chunk size for hashing stored parts. */
const HASH_CHUNK_BYTES = 1024 * 1024;
/**
 * How long one disk operation of a store (a read or write of at most a
 * chunk, a stat, a rename) may be under way before the store counts as
 * stalled. A healthy disk answers in milliseconds and a busy one within a
 * second; one silent for this long is hung (a dying drive retrying, a
 * network mount gone), and its copies serve no one until it answers.
 * Flushes to disk (fsync) are not counted: a large part's may take seconds.
 */
export const STORE_STALL_MS = 10_000;
/**
 * A store stays stalled this long after its last operation that took
 * STORE_STALL_MS or more returned: a disk whose operations take 10-30 s now
 * and then is no disk to serve from, and would otherwise go up and down.
 */
export const STORE_STALL_HOLD_MS = 20_000;

/** A disk operation of a store opened with a deadline (for a repair's own use) ran out of it. */
export class StoreStalledError extends Error {
  constructor(root: string, ms: number) {
    super(`The disk of part store ${root} has not answered for ${formatDuration(ms)} (stalled)`);
    this.name = "StoreStalledError";
  }
}

/** Runs one disk operation, counted while under way (PartStore.io). */
export type DiskOp = <T>(op: () => Promise<T>) => Promise<T>;
/**
 * A temp file younger than this whose process lives is kept even when no
 * writer holds its lock: its writer may have made it and not locked it yet.
 */
export const TEMP_LOCK_GRACE_MS = 60_000;

export class PartStore {
  readonly root: string;
  readonly partsDir: string;
  readonly tmpDir: string;
  readonly quarantineDir: string;
  /** The disk operations under way, each with when it started (performance.now()). */
  readonly #underWay = new Set<{ since: number }>();
  /** Until when the store counts as stalled after a slow operation returned, and how slow. */
  #stalledUntil = -Infinity;
  #slowestMs = 0;
  readonly #deadlineMs: number | undefined;
  /** Why no part can be stored here (init() found it); undefined when parts can be. */
  #cannotStore: string | undefined;

  /**
   * `deadlineMs`: each disk operation fails with StoreStalledError after
   * that long (it may go on underneath). For processes that work in other
   * instances' stores under a lock (a repair, freeing): a stalled disk must
   * not hold the lock, and with it the cluster's publishes, for good.
   */
  constructor(root: string, options: { deadlineMs?: number } = {}) {
    this.root = root;
    this.#deadlineMs = options.deadlineMs;
    this.partsDir = join(root, "parts");
    this.tmpDir = join(root, "tmp");
    this.quarantineDir = join(root, "quarantine");
  }

  /**
   * Makes the store's directories, and finds out whether a part written in
   * tmp/ can be renamed into parts/ and on into quarantine/ (one renamed
   * file, as storing one does): not across file systems or mount points (a
   * disk mounted at parts/ alone). Such a store still serves the parts it
   * holds, but can store none: problem() says so, so that its instance
   * counts as failing and is healed around, and part.put says why at once.
   */
  async init(): Promise<void> {
    await Deno.mkdir(this.partsDir, { recursive: true });
    await Deno.mkdir(this.tmpDir, { recursive: true });
    await Deno.mkdir(this.quarantineDir, { recursive: true });
    const name = `.fts-rename-probe-${Deno.pid}`;
    const temp = join(this.tmpDir, name);
    const part = join(this.partsDir, name);
    const quarantined = join(this.quarantineDir, name);
    try {
      await Deno.writeFile(temp, new Uint8Array());
      await Deno.rename(temp, part);
      await Deno.rename(part, quarantined);
      this.#cannotStore = undefined;
    } catch (error) {
      // EXDEV, which Deno gives as a plain Error. Anything else (a read-only
      // store, say) is for the operations that meet it to report, as before.
      if (!/cross-device/i.test(String(error))) return;
      this.#cannotStore = `${this.tmpDir}, ${this.partsDir} and ${this.quarantineDir} are not ` +
        `on one file system, so no part can be stored here (a part is renamed from one to the ` +
        `next): mount the disk at ${this.root} instead`;
    } finally {
      for (const path of [temp, part, quarantined]) await Deno.remove(path).catch(() => {});
    }
  }

  /** Refuses to store a part where none can be (see init()), before any byte is read. */
  assertCanStore(): void {
    if (this.#cannotStore !== undefined) throw new ProtocolError("INTERNAL", this.#cannotStore);
  }

  /**
   * Removes temp files no writer holds: left by a process that died
   * mid-write (a kill, a crash), whether or not its pid names a live
   * process again by now (pids are reused). A writer holds a lock on its
   * temp file from just after making it (beginWrite), which the kernel lets
   * go when the writer dies; a fresh unlocked file of a live pid may be one
   * not locked yet, and stays until it is TEMP_LOCK_GRACE_MS old. Safe while
   * others write: instances at start, and repairs on their host, call it.
   * `starting`: this process writes nothing yet, so a temp file of its own
   * pid is an earlier process's (a container's pids repeat at each start).
   */
  async cleanStaleTemps(
    { starting = false, now = Date.now() }: { starting?: boolean; now?: number } = {},
  ): Promise<number> {
    let removed = 0;
    let names: string[];
    try {
      names = await this.io(() => Array.fromAsync(Deno.readDir(this.tmpDir), (e) => e.name));
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return 0;
      throw error;
    }
    for (const name of names) {
      const path = join(this.tmpDir, name);
      if (await this.io(() => _removeIfAbandoned(path, name, now, starting))) removed++;
    }
    return removed;
  }

  /** The path of a stored part. Throws for anything that is not a digest. */
  pathOf(digest: string): string {
    if (!DIGEST_PATTERN.test(digest)) throw new TypeError(`Not a SHA-256 digest: "${digest}"`);
    // Joined by hand: the digest is hex and partsDir normalized already, and
    // join()'s normalizing was a twentieth of what serving a small part costs.
    return `${this.partsDir}/${digest.slice(0, 2)}/${digest}`;
  }

  quarantinePathOf(digest: string): string {
    if (!DIGEST_PATTERN.test(digest)) throw new TypeError(`Not a SHA-256 digest: "${digest}"`);
    return join(this.quarantineDir, digest);
  }

  /** Runs `op`, one disk operation of this store, counted while under way (see stalled()). */
  async io<T>(op: () => Promise<T>): Promise<T> {
    const token = { since: performance.now() };
    this.#underWay.add(token);
    try {
      const ms = this.#deadlineMs;
      return ms === undefined
        ? await op()
        : await raceDeadline(op(), ms, () => new StoreStalledError(this.root, ms));
    } finally {
      this.#underWay.delete(token);
      const took = performance.now() - token.since;
      if (took >= STORE_STALL_MS) {
        this.#stalledUntil = performance.now() + STORE_STALL_HOLD_MS;
        this.#slowestMs = took;
      }
    }
  }

  /**
   * Why the store counts as stalled: a disk operation under way for
   * STORE_STALL_MS or longer, or one that took that long returned less than
   * STORE_STALL_HOLD_MS ago; undefined while its disk answers.
   */
  stalled(now = performance.now()): string | undefined {
    let oldest = now;
    for (const { since } of this.#underWay) oldest = Math.min(oldest, since);
    if (now - oldest >= STORE_STALL_MS) {
      return `its disk has not answered for ${formatDuration(now - oldest)}`;
    }
    if (now < this.#stalledUntil) {
      return `its disk took ${formatDuration(this.#slowestMs)} to answer ${
        formatDuration(now - (this.#stalledUntil - STORE_STALL_HOLD_MS))
      } ago`;
    }
    return undefined;
  }

  /** Refuses a request that needs the disk while it is stalled, rather than hang it too. */
  assertNotStalled(): void {
    const stalled = this.stalled();
    if (stalled !== undefined) {
      throw new ProtocolError("INTERNAL", `Part store stalled: ${stalled}`);
    }
  }

  /**
   * Why this store cannot serve its parts now (its parts directory gone,
   * replaced by a file, unreadable), or undefined when it can. Cheap, one
   * directory opened and read from, so the supervisor can ask with each
   * check: an instance that answers but reads no part holds no copy.
   */
  problem(): string | undefined {
    const stalled = this.stalled();
    if (stalled !== undefined) return `${stalled} (${this.root})`;
    if (this.#cannotStore !== undefined) return this.#cannotStore;
    try {
      for (const _ of Deno.readDirSync(this.partsDir)) break;
      return undefined;
    } catch (error) {
      return `cannot read ${this.partsDir}: ${error instanceof Error ? error.message : error}`;
    }
  }

  /** Size of the stored part, or undefined when this instance does not hold it. */
  async sizeOf(digest: string): Promise<number | undefined> {
    try {
      const path = this.pathOf(digest);
      return (await this.io(() => Deno.stat(path))).size;
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return undefined;
      throw error;
    }
  }

  /**
   * Marks a stored part as in use now (its mtime): an upload that finds or
   * re-sends it is about to publish a file that uses it, and a repair deletes
   * parts no file uses only once untouched for a long time.
   */
  async touch(digest: string): Promise<void> {
    const now = new Date();
    // Best effort: a part that cannot be marked is still there to use.
    const path = this.pathOf(digest);
    await this.io(() => Deno.utime(path, now, now)).catch(() => {});
  }

  /**
   * Opens a stored part for reading; NOT_FOUND or QUARANTINED otherwise. The
   * open is synchronous: an open is a lookup in the page cache, and an async
   * one hands it to a thread and back, which on this machine made
   * open+fstat+close 77 us against 10 us, most of what serving a small part
   * costs.
   */
  async open(digest: string): Promise<Deno.FsFile> {
    try {
      return Deno.openSync(this.pathOf(digest), { read: true });
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
      try {
        const quarantined = this.quarantinePathOf(digest);
        await this.io(() => Deno.stat(quarantined));
      } catch {
        throw new ProtocolError("NOT_FOUND", `Part ${digest.slice(0, 12)} is not stored here`);
      }
      throw new ProtocolError("QUARANTINED", `Part ${digest.slice(0, 12)} is quarantined here`);
    }
  }

  /** Starts writing a part; nothing is visible until `commit()`. */
  async beginWrite(digest: string, options: { hash?: boolean } = {}): Promise<PartWriter> {
    const finalPath = this.pathOf(digest);
    await this.io(() => Deno.mkdir(this.tmpDir, { recursive: true }));
    const random = crypto.getRandomValues(new Uint32Array(2)).join("");
    const tempPath = join(this.tmpDir, `${Deno.pid}.${random}.tmp`);
    const hash = (options.hash ?? true) ? await sha256Hasher() : undefined;
    const file = await this.io(() => Deno.open(tempPath, { write: true, createNew: true }));
    try {
      // Held until the writer closes it, or dies: cleanStaleTemps leaves it alone till then.
      file.lockSync(true);
    } catch (error) {
      file.close();
      await Deno.remove(tempPath).catch(() => {});
      throw error;
    }
    return new PartWriter(digest, file, tempPath, finalPath, hash, (op) => this.io(op));
  }

  /** Re-hashes the stored copy; true when it still matches its name. */
  async verify(digest: string): Promise<boolean> {
    const file = await this.open(digest);
    try {
      return (await hashFile(file, Infinity, (op) => this.io(op))) === digest;
    } finally {
      file.close();
    }
  }

  /** Moves a stored copy out of service. Returns false when there was none. */
  async quarantine(digest: string): Promise<boolean> {
    try {
      const [from, to] = [this.pathOf(digest), this.quarantinePathOf(digest)];
      await this.io(() => Deno.rename(from, to));
      return true;
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return false;
      throw error;
    }
  }

  /** Deletes a stored copy. Returns false when there was none. */
  async remove(digest: string): Promise<boolean> {
    try {
      const path = this.pathOf(digest);
      await this.io(() => Deno.remove(path));
      return true;
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return false;
      throw error;
    }
  }

  /** Every digest stored here (not quarantined). */
  async list(): Promise<string[]> {
    const digests: string[] = [];
    try {
      for await (const fan of Deno.readDir(this.partsDir)) {
        if (!fan.isDirectory) continue;
        for await (const entry of Deno.readDir(join(this.partsDir, fan.name))) {
          if (DIGEST_PATTERN.test(entry.name)) digests.push(entry.name);
        }
      }
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
    return digests;
  }

  /** Every digest stored here with its size in bytes (for repair's census). */
  async listWithSizes(): Promise<[digest: string, size: number][]> {
    const out: [string, number][] = [];
    for (const digest of await this.list()) {
      const size = await this.sizeOf(digest);
      // Gone between the listing and the stat: dropped or quarantined meanwhile.
      if (size !== undefined) out.push([digest, size]);
    }
    return out;
  }

  /** Digests whose copy here was quarantined. */
  async listQuarantined(): Promise<string[]> {
    const digests: string[] = [];
    try {
      for await (const entry of Deno.readDir(this.quarantineDir)) {
        if (DIGEST_PATTERN.test(entry.name)) digests.push(entry.name);
      }
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
    return digests;
  }
}

/** A part being written: bytes go to a temp file, and become visible on commit. */
export class PartWriter {
  readonly digest: string;
  readonly #file: Deno.FsFile;
  readonly #tempPath: string;
  readonly #finalPath: string;
  readonly #hash: Sha256 | undefined;
  readonly #io: DiskOp;
  #done = false;
  bytes = 0;

  constructor(
    digest: string,
    file: Deno.FsFile,
    tempPath: string,
    finalPath: string,
    /** Checked against `digest` on commit; undefined when the caller hashed already. */
    hash: Sha256 | undefined,
    io: DiskOp = (op) => op(),
  ) {
    this.digest = digest;
    this.#file = file;
    this.#tempPath = tempPath;
    this.#finalPath = finalPath;
    this.#hash = hash;
    this.#io = io;
  }

  async write(chunk: Uint8Array): Promise<void> {
    this.#hash?.update(chunk);
    let done = 0;
    while (done < chunk.length) {
      const rest = chunk.subarray(done);
      done += await this.#io(() => this.#file.write(rest));
    }
    this.bytes += chunk.length;
  }

  /**
   * Verifies the digest (unless the caller hashed already and says so), makes
   * the part durable and visible. On a mismatch the temp file is removed and
   * DIGEST_MISMATCH thrown.
   */
  async commit(): Promise<void> {
    if (this.#done) throw new Error("PartWriter already finished");
    this.#done = true;
    try {
      if (this.#hash) {
        const actual = this.#hash.digest("hex");
        if (actual !== this.digest) {
          throw new ProtocolError(
            "DIGEST_MISMATCH",
            `Received bytes hash to ${actual.slice(0, 12)}, not ${this.digest.slice(0, 12)}`,
          );
        }
      }
      await this.#file.syncData();
      this.#file.close();
      const fanDir = join(this.#finalPath, "..");
      await this.#io(() => Deno.mkdir(fanDir, { recursive: true }));
      await this.#io(() => Deno.rename(this.#tempPath, this.#finalPath));
      await syncDir(fanDir);
    } catch (error) {
      try {
        this.#file.close();
      } catch { /* already closed */ }
      await Deno.remove(this.#tempPath).catch(() => {});
      throw error;
    }
  }

  async abort(): Promise<void> {
    if (this.#done) return;
    this.#done = true;
    try {
      this.#file.close();
    } catch { /* already closed */ }
    await Deno.remove(this.#tempPath).catch(() => {});
  }
}

/** Removes the temp file at `path` when no writer holds it (see cleanStaleTemps). */
async function _removeIfAbandoned(
  path: string,
  name: string,
  now: number,
  starting: boolean,
): Promise<boolean> {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true });
  } catch {
    return false; // gone meanwhile (committed, aborted), or not ours to open
  }
  try {
    if (!file.tryLockSync(true)) return false;
    const pid = Number(name.split(".")[0]);
    const writerGone = !Number.isInteger(pid) || !processAlive(pid) ||
      (starting && pid === Deno.pid) ||
      now - (file.statSync().mtime?.getTime() ?? 0) >= TEMP_LOCK_GRACE_MS;
    if (!writerGone) return false;
    await Deno.remove(path);
    return true;
  } catch {
    return false;
  } finally {
    file.close();
  }
}

/**
 * SHA-256 of everything readable from an open file, from its current
 * position; each read through `io` (a store's, to count it).
 */
export async function hashFile(
  file: Deno.FsFile,
  limit = Infinity,
  io: DiskOp = (op) => op(),
): Promise<string> {
  const hash = await sha256Hasher();
  await hashInto(hash, file, limit, io);
  return hash.digest("hex");
}

/** Feeds up to `limit` bytes from the file's current position into `hash`; returns the count. */
export async function hashInto(
  hash: { update(chunk: Uint8Array): unknown },
  file: Deno.FsFile,
  limit = Infinity,
  io: DiskOp = (op) => op(),
): Promise<number> {
  const buffer = new Uint8Array(HASH_CHUNK_BYTES);
  let total = 0;
  while (total < limit) {
    const want = buffer.subarray(0, Math.min(buffer.length, limit - total));
    const n = await io(() => file.read(want));
    if (n === null) break;
    hash.update(buffer.subarray(0, n));
    total += n;
  }
  return total;
}
