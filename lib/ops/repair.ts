/**
 * Repair: bring every part back to exactly R live, verified copies.
 *
 * 1. Census: ask every instance which parts it stores (part.list). An instance
 *    that does not answer is down.
 * 2. Verify: every copy of a part that needs work (too few or too many copies,
 *    a copy the manifest does not list, a listed copy that is gone, a wrong
 *    size) is re-hashed by the instance holding it (part.verify); a corrupt
 *    copy is quarantined there. `verifyAll` (the scrub) re-hashes every copy.
 *    A part at exactly R copies that match the manifest is trusted: rot in it
 *    is the scrub's and the clients' (part.report) to find.
 * 3. Copy: a part with fewer than R good copies is copied from a good replica
 *    to the best-ranked live instances (placement.ts) that lack it, over the
 *    network; the target verifies the digest before the copy becomes visible.
 * 4. Record: the manifest gains the new copies (under its lock, as a change to
 *    the parts with that digest only, so concurrent changes to files survive).
 * 5. Drop: a part with more than R good copies keeps the R best-ranked; the
 *    others leave the manifest first and are deleted after.
 *
 * Every step is idempotent: an interrupted repair leaves copies that the next
 * census finds and counts. A part without any good copy is reported lost, by
 * file and part number, and left alone: nothing is ever invented.
 */
import { type ClusterConfig, dataPaths, instanceAddress, instanceIds } from "../state/config.ts";
import { ProtocolError } from "../wire/errors.ts";
import { removeStaleTemps } from "../base/fs_util.ts";
import { withFileLock } from "../base/lock.ts";
import { type FileEntry, readManifest, updateManifest } from "../state/manifest.ts";
import { CopyError, copyPart } from "./part_copy.ts";
import { freeUnreferencedParts, storesOnHost, untouchedCopies } from "../state/part_gc.ts";
import { join } from "../base/paths.ts";
import { Peer, type StoredParts, type VerifyStatus } from "../client/peer.ts";
import { rankInstances } from "../state/placement.ts";
import { RateLimiter } from "../base/rate_limiter.ts";
import { PartStore } from "../state/store.ts";
import { type TlsClientOptions } from "../wire/tls.ts";

/** Copies that run at once (each from one instance to another). */
export const COPY_CONCURRENCY = 2;
/** Instances re-hashing at once; each hashes one part at a time. */
export const VERIFY_CONCURRENCY = 2;
/** Copy rate of repair and healing unless told otherwise: leaves clients most of the machine. */
export const DEFAULT_REPAIR_RATE_BYTES_PER_SECOND = 64 * 1024 * 1024;
/** Re-hash rate of the scrub unless told otherwise, over all instances. */
export const DEFAULT_VERIFY_RATE_BYTES_PER_SECOND = 256 * 1024 * 1024;
/** How often copies made so far are recorded in the manifest during a long repair. */
export const MANIFEST_FLUSH_INTERVAL_MS = 2_000;
/**
 * Parts no file uses (an upload that never published, a publish that lost a
 * race) are deleted once they have been stored this long: an upload slower
 * than that only has to send those parts again (the publish says which).
 */
export const DEFAULT_UNUSED_AFTER_MS = 24 * 60 * 60 * 1000;
/** The shortest --unused-after: well over an upload's refresh (upload.ts REFRESH_COPIES_AFTER_MS). */
export const MIN_UNUSED_AFTER_MS = 60 * 60 * 1000;
export const CENSUS_CONNECT_TIMEOUT_MS = 1_500;
/** part.list and part.verify answers may take a while on a busy instance. */
export const CENSUS_STALL_TIMEOUT_MS = 30_000;

/** Where a part appears in the manifest. */
export interface PartRef {
  file: string;
  index: number;
}

export type RepairEvent =
  | { type: "census"; live: string[]; down: string[] }
  | { type: "corrupt"; id: string; digest: string; refs: PartRef[] }
  | {
    type: "copy";
    digest: string;
    refs: PartRef[];
    from: string;
    to: string;
    bytes: number;
    dryRun: boolean;
  }
  | {
    type: "copy-failed";
    digest: string;
    refs: PartRef[];
    from: string;
    to: string;
    reason: string;
  }
  | { type: "drop"; digest: string; refs: PartRef[]; id: string; dryRun: boolean }
  | { type: "short"; digest: string; refs: PartRef[]; have: number; want: number }
  | { type: "lost"; digest: string; refs: PartRef[]; listed: string[] }
  | { type: "manifest"; parts: number };

/**
 * How far a repair is, for a progress display. The census comes first, then
 * the re-hash of the copies to check, then the copies to make; each total is
 * known once its step starts.
 */
export interface RepairProgress {
  phase: "census" | "verify" | "copy";
  /** Copies to re-hash, and their bytes. */
  verifyTotal: number;
  verifyBytesTotal: number;
  verified: number;
  bytesVerified: number;
  corrupt: number;
  /** Copies to make (R minus the good copies, over the parts short of R), and their bytes. */
  copyTotal: number;
  copyBytesTotal: number;
  copied: number;
  bytesCopied: number;
  /** Bytes of copies still under way, on top of bytesCopied. */
  bytesCopying: number;
  failedCopies: number;
}

export interface RepairOptions {
  /** Work out and report what would be done; copy, drop and record nothing. */
  dryRun?: boolean;
  /** Re-hash every copy on every live instance (the scrub), not only those of parts that need work. */
  verifyAll?: boolean;
  /**
   * Instances down but expected back soon (the supervisor's --heal-after):
   * the copies the manifest lists on them still count, and stay listed.
   */
  graceIds?: ReadonlySet<string>;
  /** Bytes per second copied, over all copies; 0 or absent means no limit. */
  copyRateBytesPerSecond?: number;
  /** Bytes per second re-hashed, over all instances; 0 or absent means no limit. */
  verifyRateBytesPerSecond?: number;
  signal?: AbortSignal;
  onEvent?: (event: RepairEvent) => void;
  /** Called as the work advances (each copy re-hashed, each chunk copied); see RepairProgress. */
  onProgress?: (progress: RepairProgress) => void;
  /** TLS for every connection to an instance; absent means FTS_TLS_CA or plain TCP. */
  tls?: TlsClientOptions | undefined;
  /** Delete parts no file uses once stored this long (DEFAULT_UNUSED_AFTER_MS); 0 keeps them. */
  unusedAfterMs?: number;
}

export interface RepairReport {
  dryRun: boolean;
  live: string[];
  down: string[];
  /** Distinct parts (digests) the manifest references. */
  parts: number;
  /** Copies re-hashed by their instance. */
  verified: number;
  bytesVerified: number;
  corrupt: { id: string; digest: string; refs: PartRef[] }[];
  copied: number;
  bytesCopied: number;
  failedCopies: number;
  dropped: number;
  /** Manifest part entries whose replica list changed. */
  manifestParts: number;
  /** Parts left with fewer than R copies: not enough live instances took one. */
  short: { digest: string; refs: PartRef[]; have: number }[];
  /** Parts with no good copy on any live instance. */
  lost: { digest: string; refs: PartRef[]; listed: string[] }[];
  /** Parts no file uses, stored longer than unusedAfterMs: deleted (or, dry run, would be). */
  unused: { parts: number; copies: number; bytes: number };
}

/** How a part is named for people: `part 3 of "a.bin"`. */
export function describePart(digest: string, refs: readonly PartRef[]): string {
  const [first] = refs;
  if (!first) return `unreferenced part ${digest.slice(0, 12)}`;
  const more = refs.length > 1 ? ` (and ${refs.length - 1} more)` : "";
  return `part ${first.index} of ${JSON.stringify(first.file)}${more}`;
}

/** What the manifest says about one distinct part. */
interface _Wanted {
  digest: string;
  size: number;
  refs: PartRef[];
  /** Instances the manifest lists for it, over every file that uses it. */
  listed: Set<string>;
}

interface _ReplicaChange {
  add: Set<string>;
  remove: Set<string>;
}

/**
 * Runs a repair (or, with `verifyAll`, a scrub and repair) of the cluster in
 * `dir`. One runs at a time per data directory; a second waits for the first.
 */
export async function repairCluster(
  dir: string,
  config: ClusterConfig,
  options: RepairOptions = {},
): Promise<RepairReport> {
  if (options.dryRun) return await new _Repair(dir, config, options).run();
  const paths = dataPaths(dir);
  await Deno.mkdir(paths.runDir, { recursive: true });
  return await withFileLock(join(paths.runDir, "repair.lock"), async () => {
    // A manifest write cut off by a kill leaves its temp file beside it.
    await removeStaleTemps(dir);
    return await new _Repair(dir, config, options).run();
  });
}

class _Repair {
  readonly #dir: string;
  readonly #config: ClusterConfig;
  readonly #options: RepairOptions;
  readonly #dryRun: boolean;
  readonly #report: RepairReport;
  readonly #stored = new Map<string, StoredParts>();
  readonly #changes = new Map<string, _ReplicaChange>();
  /** The file entries as this repair read them (_entryKey); only they lose listed copies. */
  readonly #seen = new Set<string>();
  readonly #copyLimiter: RateLimiter | undefined;
  readonly #verifyLimiter: RateLimiter | undefined;
  /** Copies being sent from each instance, to spread the reads. */
  readonly #sending = new Map<string, number>();
  #lastFlush = performance.now();
  #phase: RepairProgress["phase"] = "census";
  readonly #totals = { verifyTotal: 0, verifyBytesTotal: 0, copyTotal: 0, copyBytesTotal: 0 };
  #bytesCopying = 0;

  constructor(dir: string, config: ClusterConfig, options: RepairOptions) {
    this.#dir = dir;
    this.#config = config;
    this.#options = options;
    this.#dryRun = options.dryRun ?? false;
    this.#copyLimiter = options.copyRateBytesPerSecond
      ? new RateLimiter(options.copyRateBytesPerSecond)
      : undefined;
    this.#verifyLimiter = options.verifyRateBytesPerSecond
      ? new RateLimiter(options.verifyRateBytesPerSecond)
      : undefined;
    this.#report = {
      dryRun: this.#dryRun,
      live: [],
      down: [],
      parts: 0,
      verified: 0,
      bytesVerified: 0,
      corrupt: [],
      copied: 0,
      bytesCopied: 0,
      failedCopies: 0,
      dropped: 0,
      manifestParts: 0,
      short: [],
      lost: [],
      unused: { parts: 0, copies: 0, bytes: 0 },
    };
  }

  #emit(event: RepairEvent): void {
    this.#options.onEvent?.(event);
  }

  #tick(phase = this.#phase): void {
    this.#phase = phase;
    if (!this.#options.onProgress) return;
    const r = this.#report;
    this.#options.onProgress({
      phase,
      ...this.#totals,
      verified: r.verified,
      bytesVerified: r.bytesVerified,
      corrupt: r.corrupt.length,
      copied: r.copied,
      bytesCopied: r.bytesCopied,
      bytesCopying: this.#bytesCopying,
      failedCopies: r.failedCopies,
    });
  }

  #address(id: string): string {
    return instanceAddress(this.#config, id);
  }

  async #connect(id: string): Promise<Peer> {
    return await Peer.connect(this.#address(id), {
      connectTimeoutMs: CENSUS_CONNECT_TIMEOUT_MS,
      stallTimeoutMs: CENSUS_STALL_TIMEOUT_MS,
      tls: this.#options.tls,
    });
  }

  async run(): Promise<RepairReport> {
    this.#options.signal?.throwIfAborted();
    const wanted = await this.#readWanted();
    this.#report.parts = wanted.size;
    this.#tick("census");
    await this.#census();
    const { signal } = this.#options;
    signal?.throwIfAborted();
    // With no instance answering, every part would look lost: say what is wrong instead.
    if (this.#report.live.length === 0 && wanted.size > 0) {
      const ids = instanceIds(this.#config);
      throw new Error(
        `No instance of the cluster answers (${this.#address(ids[0]!)}${
          ids.length > 1 ? ` and ${ids.length - 1} more` : ""
        }): is it running? Start it with "fts cluster"; nothing was changed`,
      );
    }

    // Which copies to re-hash: all of them for a scrub, else those of parts that need work.
    const toVerify = new Map<string, Set<string>>();
    const need = (id: string, digest: string) => {
      const set = toVerify.get(id) ?? new Set<string>();
      set.add(digest);
      toVerify.set(id, set);
    };
    if (this.#options.verifyAll) {
      for (const [id, stored] of this.#stored) {
        for (const digest of stored.parts.keys()) need(id, digest);
      }
    } else {
      for (const part of wanted.values()) {
        if (!this.#needsWork(part)) continue;
        for (const [id, stored] of this.#stored) {
          if (stored.parts.has(part.digest)) need(id, part.digest);
        }
      }
    }
    if (!this.#dryRun) {
      for (const [id, digests] of toVerify) {
        for (const digest of digests) {
          this.#totals.verifyTotal++;
          this.#totals.verifyBytesTotal += this.#stored.get(id)?.parts.get(digest) ?? 0;
        }
      }
      this.#tick("verify");
    }
    const good = this.#dryRun
      ? new Map<string, Set<string>>()
      : await this.#verify(toVerify, wanted);

    // Good copies of each part: verified ones, or trusted ones of parts that need no work.
    const holders = (part: _Wanted): Set<string> => {
      const out = new Set<string>();
      for (const [id, stored] of this.#stored) {
        if (stored.parts.get(part.digest) !== part.size) continue;
        const checked = toVerify.get(id)?.has(part.digest) ?? false;
        if (!checked || this.#dryRun || good.get(id)?.has(part.digest)) out.add(id);
      }
      return out;
    };

    const jobs: (() => Promise<void>)[] = [];
    const surplus: { part: _Wanted; have: Set<string> }[] = [];
    for (const part of wanted.values()) {
      const have = holders(part);
      const graceHeld = this.#graceHeld(part);
      if (have.size === 0 && graceHeld.length === 0) {
        this.#lost(part);
        continue;
      }
      const deficit = this.#config.replicas - have.size - graceHeld.length;
      if (deficit > 0 && have.size > 0) {
        this.#totals.copyTotal += deficit;
        this.#totals.copyBytesTotal += deficit * part.size;
        jobs.push(() => this.#replicate(part, have, deficit));
      } else if (have.size > this.#config.replicas) {
        surplus.push({ part, have });
      } else {
        this.#record(part, have);
      }
    }
    this.#tick("copy");
    await _runPool(jobs, COPY_CONCURRENCY);
    signal?.throwIfAborted();

    // Drops: out of the manifest first, so no new fetch is sent to a copy about to vanish.
    const drops: { id: string; digest: string }[] = [];
    for (const { part, have } of surplus) {
      const keep = new Set(rankInstances(part.digest, [...have]).slice(0, this.#config.replicas));
      for (const id of have) {
        if (keep.has(id)) continue;
        drops.push({ id, digest: part.digest });
        this.#emit({
          type: "drop",
          digest: part.digest,
          refs: part.refs,
          id,
          dryRun: this.#dryRun,
        });
      }
      this.#record(part, keep);
    }
    await this.#flush();
    if (this.#dryRun) {
      this.#report.dropped = drops.length;
    } else if (drops.length > 0) {
      this.#report.dropped = await this.#deleteDropped(drops);
    }
    await this.#deleteUnused(wanted);
    return this.#report;
  }

  /**
   * Deletes the parts no file uses whose every copy on this host has gone
   * untouched for unusedAfterMs (an upload touches the copies it finds, and
   * re-asks for early ones before it publishes). Under the manifest lock, and
   * only if no file uses them and no copy was touched by then
   * (freeUnreferencedParts): a publish checks its copies under the same lock,
   * and one that lost a copy anyway is told MISSING_PARTS and sends it again.
   */
  async #deleteUnused(wanted: ReadonlyMap<string, _Wanted>): Promise<void> {
    const after = this.#options.unusedAfterMs ?? DEFAULT_UNUSED_AFTER_MS;
    if (!(after > 0)) return;
    const sizes = new Map<string, number>();
    for (const stored of this.#stored.values()) {
      for (const [digest, size] of stored.parts) {
        if (!wanted.has(digest)) sizes.set(digest, size);
      }
    }
    if (sizes.size === 0) return;
    const stores = await storesOnHost(this.#dir);
    const cutoff = Date.now() - after;
    /** Copies on this host of each old unused part. */
    const old = new Map<string, number>();
    for (const digest of sizes.keys()) {
      const held = await untouchedCopies(stores, digest, cutoff);
      if (held) old.set(digest, held);
    }
    if (old.size === 0) return;
    // Without a dry run, a part a file took up meanwhile is kept and not counted.
    const deleted = this.#dryRun
      ? [...old.keys()]
      : (await freeUnreferencedParts(this.#dir, old.keys(), { untouchedSince: cutoff })).freed;
    const unused = this.#report.unused;
    for (const digest of deleted) {
      const held = old.get(digest)!;
      unused.parts++;
      unused.copies += held;
      unused.bytes += held * sizes.get(digest)!;
    }
  }

  /**
   * Deletes surplus copies that have left the manifest. Under the manifest
   * lock, and only where no file lists the copy now: a publish that meanwhile
   * named it (it checks copies under the same lock) keeps it.
   *
   * Instances share this data directory, so repair removes the file where the
   * instance keeps it; a network delete op would first need a signed request.
   */
  async #deleteDropped(drops: { id: string; digest: string }[]): Promise<number> {
    const paths = dataPaths(this.#dir);
    return await updateManifest(this.#dir, async (manifest) => {
      const listed = new Set<string>();
      for (const file of Object.values(manifest.files)) {
        for (const part of file.parts) {
          for (const id of part.replicas) listed.add(`${id}:${part.digest}`);
        }
      }
      let deleted = 0;
      for (const { id, digest } of drops) {
        if (listed.has(`${id}:${digest}`)) continue;
        if (await new PartStore(paths.instanceDir(id)).remove(digest)) deleted++;
      }
      return deleted;
    });
  }

  async #readWanted(): Promise<Map<string, _Wanted>> {
    const manifest = await readManifest(this.#dir);
    const wanted = new Map<string, _Wanted>();
    for (const file of Object.values(manifest.files)) {
      this.#seen.add(_entryKey(file));
      file.parts.forEach((part, index) => {
        let entry = wanted.get(part.digest);
        if (!entry) {
          entry = { digest: part.digest, size: part.size, refs: [], listed: new Set() };
          wanted.set(part.digest, entry);
        }
        entry.refs.push({ file: file.name, index });
        for (const id of part.replicas) entry.listed.add(id);
      });
    }
    return wanted;
  }

  async #census(): Promise<void> {
    const ids = instanceIds(this.#config);
    await Promise.all(ids.map(async (id) => {
      let peer: Peer | undefined;
      try {
        peer = await this.#connect(id);
        this.#stored.set(id, await peer.listParts());
      } catch {
        // Does not answer: down, as far as this repair is concerned.
      } finally {
        peer?.close();
      }
    }));
    this.#report.live = ids.filter((id) => this.#stored.has(id));
    this.#report.down = ids.filter((id) => !this.#stored.has(id));
    this.#emit({ type: "census", live: this.#report.live, down: this.#report.down });
  }

  /** Listed copies on instances that are down but in their grace period. */
  #graceHeld(part: _Wanted): string[] {
    const grace = this.#options.graceIds;
    if (!grace) return [];
    return [...part.listed].filter((id) => !this.#stored.has(id) && grace.has(id));
  }

  /** True when a part's copies differ from R good, listed copies in any way. */
  #needsWork(part: _Wanted): boolean {
    const present = new Set<string>();
    for (const [id, stored] of this.#stored) {
      const size = stored.parts.get(part.digest);
      if (size === undefined) continue;
      if (size !== part.size) return true;
      present.add(id);
    }
    for (const id of this.#graceHeld(part)) present.add(id);
    if (present.size !== this.#config.replicas) return true;
    if ([...present].some((id) => !part.listed.has(id))) return true;
    // A listed copy that is not there (gone, or on a down instance) needs a new home.
    return [...part.listed].some((id) => !present.has(id));
  }

  /** Re-hashes copies on their instances; returns the good ones per instance. */
  async #verify(
    toVerify: Map<string, Set<string>>,
    wanted: Map<string, _Wanted>,
  ): Promise<Map<string, Set<string>>> {
    const good = new Map<string, Set<string>>();
    const { signal } = this.#options;
    const jobs = [...toVerify].map(([id, digests]) => async () => {
      const ok = new Set<string>();
      good.set(id, ok);
      let peer: Peer | undefined;
      try {
        peer = await this.#connect(id);
        for (const digest of digests) {
          signal?.throwIfAborted();
          const size = this.#stored.get(id)?.parts.get(digest) ?? 0;
          await this.#verifyLimiter?.take(size);
          const status: VerifyStatus = await peer.verifyPart(digest);
          this.#report.verified++;
          this.#report.bytesVerified += size;
          if (status === "ok") ok.add(digest);
          if (status === "corrupt") {
            const refs = wanted.get(digest)?.refs ?? [];
            this.#report.corrupt.push({ id, digest, refs });
            this.#emit({ type: "corrupt", id, digest, refs });
          }
          this.#tick();
        }
      } catch (error) {
        signal?.throwIfAborted();
        // The instance went away mid-check: none of its unchecked copies count.
        void error;
      } finally {
        peer?.close();
      }
    });
    await _runPool(jobs, VERIFY_CONCURRENCY);
    return good;
  }

  #lost(part: _Wanted): void {
    const listed = [...part.listed].sort();
    this.#report.lost.push({ digest: part.digest, refs: part.refs, listed });
    this.#emit({ type: "lost", digest: part.digest, refs: part.refs, listed });
  }

  /** Copies a part to `deficit` more instances, best-ranked first. */
  async #replicate(part: _Wanted, have: Set<string>, deficit: number): Promise<void> {
    const { digest, size, refs } = part;
    const sources = [...have];
    const live = [...this.#stored.keys()];
    // A quarantine says this disk rotted the part once: try it last.
    const candidates = rankInstances(digest, live.filter((id) => !have.has(id)))
      .sort((a, b) =>
        Number(this.#stored.get(a)!.quarantined.has(digest)) -
        Number(this.#stored.get(b)!.quarantined.has(digest))
      );
    const final = new Set(have);
    let missing = deficit;
    for (const target of candidates) {
      if (missing === 0 || sources.length === 0) break;
      if (this.#dryRun) {
        this.#emit({
          type: "copy",
          digest,
          refs,
          from: sources[0]!,
          to: target,
          bytes: size,
          dryRun: true,
        });
        final.add(target);
        missing--;
        this.#report.copied++;
        this.#report.bytesCopied += size;
        this.#tick();
        continue;
      }
      while (sources.length > 0) {
        this.#options.signal?.throwIfAborted();
        const source = this.#pickSource(sources);
        this.#sending.set(source, (this.#sending.get(source) ?? 0) + 1);
        let moved = 0;
        try {
          await copyPart({
            source: this.#address(source),
            target: this.#address(target),
            digest,
            size,
            limiter: this.#copyLimiter,
            signal: this.#options.signal,
            tls: this.#options.tls,
            onBytes: (bytes) => {
              moved += bytes;
              this.#bytesCopying += bytes;
              this.#tick();
            },
          });
          // Done: its bytes move from under way to copied.
          this.#bytesCopying -= moved;
          moved = 0;
          final.add(target);
          missing--;
          this.#report.copied++;
          this.#report.bytesCopied += size;
          this.#emit({
            type: "copy",
            digest,
            refs,
            from: source,
            to: target,
            bytes: size,
            dryRun: false,
          });
          break;
        } catch (error) {
          this.#options.signal?.throwIfAborted();
          if (!(error instanceof CopyError)) throw error;
          this.#report.failedCopies++;
          this.#emit({
            type: "copy-failed",
            digest,
            refs,
            from: source,
            to: target,
            reason: error.message,
          });
          if (error.side === "target") break;
          // This source cannot give the part now; it stays listed unless its copy is gone.
          sources.splice(sources.indexOf(source), 1);
          if (error.corruptSource || _copyIsGone(error)) final.delete(source);
          if (error.corruptSource) await this.#reportCorrupt(source, part);
        } finally {
          this.#sending.set(source, this.#sending.get(source)! - 1);
          // A failed copy's bytes were never copied.
          this.#bytesCopying -= moved;
          this.#tick();
        }
      }
    }
    if (final.size === 0) {
      this.#lost(part);
      return;
    }
    if (missing > 0) {
      const have = final.size;
      this.#report.short.push({ digest, refs, have });
      this.#emit({ type: "short", digest, refs, have, want: this.#config.replicas });
    }
    this.#record(part, final);
    if (performance.now() - this.#lastFlush > MANIFEST_FLUSH_INTERVAL_MS) await this.#flush();
  }

  #pickSource(sources: string[]): string {
    return sources.reduce((best, id) =>
      (this.#sending.get(id) ?? 0) < (this.#sending.get(best) ?? 0) ? id : best
    );
  }

  /** Tells the instance its copy failed; it re-hashes and quarantines it. */
  async #reportCorrupt(id: string, part: _Wanted): Promise<void> {
    let peer: Peer | undefined;
    try {
      peer = await this.#connect(id);
      if (await peer.report(part.digest)) {
        this.#report.corrupt.push({ id, digest: part.digest, refs: part.refs });
        this.#emit({ type: "corrupt", id, digest: part.digest, refs: part.refs });
      }
    } catch {
      // Gone as well; it is not counted either way.
    } finally {
      peer?.close();
    }
  }

  /**
   * Notes the manifest change that makes a part's listing match `final`, the
   * good copies it has now. Copies on down instances stay listed unless the
   * part has R good copies without them, or they are in their grace period.
   */
  #record(part: _Wanted, final: Set<string>): void {
    const add = new Set([...final].filter((id) => !part.listed.has(id)));
    const remove = new Set<string>();
    for (const id of part.listed) {
      if (final.has(id)) continue;
      const live = this.#stored.has(id);
      const waited = this.#options.graceIds?.has(id) ?? false;
      if (live || (!waited && final.size >= this.#config.replicas)) remove.add(id);
    }
    if (add.size > 0 || remove.size > 0) this.#changes.set(part.digest, { add, remove });
  }

  /** Writes the noted changes into the manifest, as changes to parts with those digests only. */
  async #flush(): Promise<void> {
    this.#lastFlush = performance.now();
    if (this.#changes.size === 0) return;
    const changes = new Map(this.#changes);
    this.#changes.clear();
    if (this.#dryRun) {
      this.#report.manifestParts += changes.size;
      return;
    }
    const paths = dataPaths(this.#dir);
    // Whether `id` stores the part now, checked once per copy; instances share the data directory.
    const present = new Map<string, Promise<boolean>>();
    const storedNow = (id: string, digest: string, size: number): Promise<boolean> => {
      const key = `${id}:${digest}`;
      let answer = present.get(key);
      if (!answer) {
        answer = new PartStore(paths.instanceDir(id)).sizeOf(digest).then((got) => got === size);
        present.set(key, answer);
      }
      return answer;
    };
    const updated = await updateManifest(this.#dir, async (manifest) => {
      let count = 0;
      // Re-read under the lock: files added, replaced or removed meanwhile are
      // handled by digest, so only parts with these exact bytes change.
      for (const file of Object.values(manifest.files)) {
        for (const part of file.parts) {
          const change = changes.get(part.digest);
          if (!change) continue;
          const next = new Set(part.replicas);
          // An entry published since (an rm and a re-upload) lists copies its
          // publish found stored under this lock, fresher than the census: a
          // removal meant for a surplus copy would also let #deleteDropped
          // delete a copy that entry relies on.
          if (this.#seen.has(_entryKey(file))) {
            for (const id of change.remove) next.delete(id);
          }
          for (const id of change.add) {
            // A copy made earlier may be gone by now: an rm freed the part
            // (part_gc.ts, under this lock) and a re-upload listed other holders.
            if (!next.has(id) && await storedNow(id, part.digest, part.size)) next.add(id);
          }
          const replicas = rankInstances(part.digest, [...next]);
          if (replicas.join() === part.replicas.join()) continue;
          part.replicas = replicas;
          count++;
        }
      }
      return count;
    });
    this.#report.manifestParts += updated;
    if (updated > 0) this.#emit({ type: "manifest", parts: updated });
  }
}

/** Names one published entry; a rename keeps it, a re-upload (even of the same bytes) does not. */
function _entryKey(file: FileEntry): string {
  return JSON.stringify([file.owner, file.contentId, file.created]);
}

/** The source answered that it no longer has a servable copy. */
function _copyIsGone(error: CopyError): boolean {
  const cause = error.cause;
  return cause instanceof ProtocolError &&
    (cause.code === "NOT_FOUND" || cause.code === "QUARANTINED");
}

/** Runs async jobs, at most `limit` at a time; the first failure is rethrown after all settle. */
async function _runPool(jobs: (() => Promise<void>)[], limit: number): Promise<void> {
  let next = 0;
  const errors: unknown[] = [];
  const worker = async () => {
    while (next < jobs.length) {
      const job = jobs[next++]!;
      try {
        await job();
      } catch (error) {
        errors.push(error);
        next = jobs.length;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, jobs.length) }, worker));
  if (errors.length > 0) throw errors[0];
}
