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
import { deadline } from "../base/deadline.ts";
import { type ClusterConfig } from "../state/config.ts";
import { PARTS_LOCK, REPAIR_LOCK } from "../state/manifest_store.ts";
import {
  freeUnreferenced,
  referencedAmong,
  storesOnHost,
  untouchedCopies,
} from "../state/part_gc.ts";
import { type CopyOf } from "../etcd/etcd_freed_parts.ts";
import {
  createEmptyManifest,
  refuseEtcdHost,
  requireManifestIfParts,
} from "../state/manifest_guard.ts";
import { fileRepairTarget, type RepairTarget } from "./repair_target.ts";
import { rankAcrossDomains } from "../state/placement.ts";
import { runPool } from "../base/run_pool.ts";
import { PartReplicator } from "./part_replicator.ts";
import { COPY_CONCURRENCY, DEFAULT_UNUSED_AFTER_MS, type RepairOptions } from "./repair_options.ts";
import { RepairManifest } from "./repair_manifest.ts";
import { type RepairReport } from "./repair_report.ts";
import { RepairRun, type WantedPart } from "./repair_run.ts";
import { verifyCopies } from "./repair_verify.ts";
import { preferredTlsError } from "../wire/tls.ts";

export {
  CENSUS_CONNECT_TIMEOUT_MS,
  CENSUS_STALL_TIMEOUT_MS,
  COPY_CONCURRENCY,
  DEFAULT_REPAIR_RATE_BYTES_PER_SECOND,
  DEFAULT_UNUSED_AFTER_MS,
  DEFAULT_VERIFY_RATE_BYTES_PER_SECOND,
  MANIFEST_FLUSH_INTERVAL_MS,
  MIN_UNUSED_AFTER_MS,
  type RepairOptions,
  VERIFY_CONCURRENCY,
} from "./repair_options.ts";
export {
  describePart,
  type PartRef,
  type RepairEvent,
  type RepairProgress,
  type RepairReport,
} from "./repair_report.ts";

/**
 * Runs a repair (or, with `verifyAll`, a scrub and repair) of the cluster in
 * `dir`. One runs at a time per data directory; a second waits for the first.
 */
export async function repairCluster(
  dir: string,
  config: ClusterConfig,
  options: RepairOptions = {},
): Promise<RepairReport> {
  refuseEtcdHost(dir);
  if (!options.newCluster) await requireManifestIfParts(dir, () => storesOnHost(dir));
  else if (!options.dryRun) await createEmptyManifest(dir);
  return await repairTarget(fileRepairTarget(dir, config), options);
}

/**
 * Runs a repair of the cluster `target` describes. One runs at a time per
 * cluster (the repair lock: a file lock in one data directory, a lease in
 * etcd across hosts); a second waits for the first.
 */
export async function repairTarget(
  target: RepairTarget,
  options: RepairOptions = {},
): Promise<RepairReport> {
  if (options.dryRun) return await new _Repair(target, options).run();
  // A run that holds the lock (a scrub, say) may take hours: say why nothing happens.
  const cancelNotice = deadline(LOCK_NOTICE_MS, () => options.onEvent?.({ type: "waiting" }));
  try {
    return await target.locker.withLock(REPAIR_LOCK, async () => {
      cancelNotice();
      await target.prepare();
      const goneIds = options.goneIdsNow?.() ?? options.goneIds;
      return await new _Repair(target, { ...options, ...(goneIds ? { goneIds } : {}) }).run();
    });
  } finally {
    cancelNotice();
  }
}

/** How long a repair waits for the repair lock before it says it is waiting. */
const LOCK_NOTICE_MS = 500;

/** One repair: the plan (what each part needs) and its steps in order. */
class _Repair {
  readonly #run: RepairRun;
  readonly #manifest: RepairManifest;
  readonly #replicator: PartReplicator;

  constructor(target: RepairTarget, options: RepairOptions) {
    this.#run = new RepairRun(target, options);
    this.#manifest = new RepairManifest(this.#run);
    this.#replicator = new PartReplicator(this.#run, this.#manifest);
  }

  async run(): Promise<RepairReport> {
    this.#run.options.signal?.throwIfAborted();
    const wanted = await this.#manifest.readWanted();
    this.#run.report.parts = wanted.size;
    this.#run.tick("census");
    await this.#run.census();
    const { signal } = this.#run.options;
    signal?.throwIfAborted();
    // With no instance answering, every part would look lost: say what is wrong instead.
    if (this.#run.report.live.length === 0 && wanted.size > 0) {
      const ids = this.#run.target.view.ids;
      // Up, but not to be spoken to without the right CA: say that, not "is it running?".
      const tlsError = preferredTlsError(this.#run.tlsErrors, ids.length);
      if (tlsError) throw tlsError;
      throw new Error(
        `No instance of the cluster answers (${this.#run.address(ids[0]!)}${
          ids.length > 1 ? ` and ${ids.length - 1} more` : ""
        }): is it running? Start it with "${this.#run.target.startCommand}"; nothing was changed`,
      );
    }

    // Which copies to re-hash: all of them for a scrub, else those of parts that need work.
    const toVerify = new Map<string, Set<string>>();
    const need = (id: string, digest: string) => {
      const set = toVerify.get(id) ?? new Set<string>();
      set.add(digest);
      toVerify.set(id, set);
    };
    if (this.#run.options.verifyAll) {
      for (const [id, stored] of this.#run.stored) {
        for (const digest of stored.parts.keys()) need(id, digest);
      }
    } else {
      for (const part of wanted.values()) {
        if (!this.#needsWork(part)) continue;
        for (const [id, stored] of this.#run.stored) {
          if (stored.parts.has(part.digest)) need(id, part.digest);
        }
      }
    }
    if (!this.#run.dryRun) {
      for (const [id, digests] of toVerify) {
        for (const digest of digests) {
          this.#run.totals.verifyTotal++;
          this.#run.totals.verifyBytesTotal += this.#run.stored.get(id)?.parts.get(digest) ?? 0;
        }
      }
      this.#run.tick("verify");
    }
    const good = this.#run.dryRun
      ? new Map<string, Set<string>>()
      : await verifyCopies(this.#run, toVerify, wanted);

    // Good copies of each part: verified ones, or trusted ones of parts that need no work.
    const holders = (part: WantedPart): Set<string> => {
      const out = new Set<string>();
      for (const [id, stored] of this.#run.stored) {
        if (stored.parts.get(part.digest) !== part.size) continue;
        const checked = toVerify.get(id)?.has(part.digest) ?? false;
        if (!checked || this.#run.dryRun || good.get(id)?.has(part.digest)) out.add(id);
      }
      return out;
    };

    const jobs: (() => Promise<void>)[] = [];
    const surplus: { part: WantedPart; have: Set<string> }[] = [];
    for (const part of wanted.values()) {
      const have = holders(part);
      const graceHeld = this.#run.graceHeld(part);
      if (have.size === 0 && graceHeld.length === 0) {
        this.#run.lost(part);
        continue;
      }
      const deficit = this.#run.replicas - have.size - graceHeld.length;
      const unspread = this.#unspread([...have, ...graceHeld]);
      if (deficit > 0 && have.size > 0) {
        this.#run.totals.copyTotal += deficit;
        this.#run.totals.copyBytesTotal += deficit * part.size;
        jobs.push(async () => void await this.#replicator.replicate(part, have, deficit));
      } else if (have.size > this.#run.replicas) {
        surplus.push({ part, have });
      } else if (unspread > 0 && have.size > 0) {
        // R copies in too few failure domains (a host joined a cluster that had
        // one): a copy in each domain missing, then the surplus goes, best spread kept.
        this.#run.totals.copyTotal += unspread;
        this.#run.totals.copyBytesTotal += unspread * part.size;
        jobs.push(async () => {
          const final = await this.#replicator.replicate(part, have, unspread, { spread: true });
          if (final.size > this.#run.replicas) surplus.push({ part, have: final });
        });
      } else {
        this.#manifest.record(part, have);
      }
    }
    this.#run.tick("copy");
    await runPool(jobs, COPY_CONCURRENCY);
    signal?.throwIfAborted();

    // Drops: out of the manifest first, so no new fetch is sent to a copy about to vanish.
    const drops: { id: string; digest: string }[] = [];
    for (const { part, have } of surplus) {
      const keep = new Set(
        rankAcrossDomains(part.digest, [...have], this.#run.target.view.domain)
          .slice(0, this.#run.replicas),
      );
      for (const id of have) {
        if (keep.has(id)) continue;
        drops.push({ id, digest: part.digest });
        // A copy on another host's instance (a cluster in etcd) leaves the
        // manifest here and is deleted by that host, told through etcd.
        const left = !this.#run.target.removesCopiesOn(id);
        const { dryRun } = this.#run;
        this.#run.emit({ type: "drop", digest: part.digest, refs: part.refs, id, dryRun, left });
      }
      this.#manifest.record(part, keep);
    }
    await this.#manifest.flush();
    if (this.#run.dryRun) {
      const here = drops.filter((d) => this.#run.target.removesCopiesOn(d.id)).length;
      this.#run.report.dropped = here;
      this.#run.report.droppedElsewhere = drops.length - here;
    } else if (drops.length > 0) {
      this.#run.report.dropped = (await this.#manifest.deleteDropped(drops)).size;
    }
    await this.#deleteUnused(wanted);
    return this.#run.report;
  }

  /**
   * How many more failure domains copies on `ids` should span: every part's
   * R copies go to min(R, domains with a live instance) domains (placement.ts).
   */
  #unspread(ids: Iterable<string>): number {
    const { domain } = this.#run.target.view;
    this.#liveDomains ??= new Set([...this.#run.stored.keys()].map(domain)).size;
    const want = Math.min(this.#run.replicas, this.#liveDomains);
    return Math.max(0, want - new Set([...ids].map(domain)).size);
  }

  /** Failure domains with a live instance, from the census. */
  #liveDomains: number | undefined;

  /** True when a part's copies differ from R good, listed copies (spread over domains) in any way. */
  #needsWork(part: WantedPart): boolean {
    const present = new Set<string>();
    for (const [id, stored] of this.#run.stored) {
      const size = stored.parts.get(part.digest);
      if (size === undefined) continue;
      if (size !== part.size) return true;
      present.add(id);
    }
    for (const id of this.#run.graceHeld(part)) present.add(id);
    if (present.size !== this.#run.replicas) return true;
    if (this.#unspread(present) > 0) return true;
    if ([...present].some((id) => !part.listed.has(id))) return true;
    // A listed copy that is not there (gone, or on a down instance) needs a new home.
    return [...part.listed].some((id) => !present.has(id));
  }

  /**
   * Deletes the parts no file uses whose every copy on this host has gone
   * untouched for unusedAfterMs (an upload touches the copies it finds, and
   * re-asks for early ones before it publishes). Under the parts lock, and
   * only if no file uses them and no copy was touched by then
   * (freeUnreferencedParts): a publish checks its copies under the same lock,
   * and one that lost a copy anyway is told MISSING_PARTS and sends it again.
   * In a cluster in etcd, the copies on other hosts are announced to them,
   * which apply the same rule (#announceUnused).
   */
  async #deleteUnused(wanted: ReadonlyMap<string, WantedPart>): Promise<void> {
    const after = this.#run.options.unusedAfterMs ?? DEFAULT_UNUSED_AFTER_MS;
    const { target } = this.#run;
    /** Size and live copies of each part no file uses. */
    const sizes = new Map<string, { size: number; copies: number }>();
    /** Copies of those on other hosts, for their hosts to delete (a cluster in etcd). */
    const elsewhere: (CopyOf & { size: number })[] = [];
    for (const [id, stored] of this.#run.stored) {
      for (const [digest, size] of stored.parts) {
        if (wanted.has(digest)) continue;
        if (after > 0 && target.announceUnused && !target.removesCopiesOn(id)) {
          elsewhere.push({ id, digest, size });
          continue;
        }
        const seen = sizes.get(digest);
        sizes.set(digest, { size, copies: (seen?.copies ?? 0) + 1 });
      }
    }
    const deleted = after > 0 && sizes.size > 0 ? await this.#deleteOld(sizes, after) : new Map();
    const { unused, unusedKept, unusedElsewhere } = this.#run.report;
    unusedKept.unusedAfterMs = after;
    for (const [digest, { size, copies }] of sizes) {
      const held = deleted.get(digest);
      if (held === undefined) {
        unusedKept.parts++;
        unusedKept.copies += copies;
        unusedKept.bytes += copies * size;
        continue;
      }
      unused.parts++;
      unused.copies += held;
      unused.bytes += held * size;
    }
    const told = elsewhere.length > 0 ? await this.#announceUnused(elsewhere, after) : [];
    unusedElsewhere.parts = new Set(told.map((copy) => copy.digest)).size;
    unusedElsewhere.copies = told.length;
    unusedElsewhere.bytes = told.reduce((sum, copy) => sum + copy.size, 0);
  }

  /**
   * Tells the hosts of `copies` (parts no file used when the census was
   * taken) to delete those untouched for `after` ms: under the parts lock,
   * only the parts no file uses now. Returns the copies told of (dry run:
   * that would be); none when etcd could not be told.
   */
  async #announceUnused<T extends CopyOf>(copies: T[], after: number): Promise<T[]> {
    const { target } = this.#run;
    const digests = new Set(copies.map((copy) => copy.digest));
    if (this.#run.dryRun) return copies;
    return await target.locker.withLock(PARTS_LOCK, async () => {
      const used = await referencedAmong(target.store, digests);
      const unused = copies.filter((copy) => !used.has(copy.digest));
      if (unused.length === 0) return unused;
      try {
        await target.announceUnused!(unused, Date.now() - after);
        return unused;
      } catch {
        // A repair on their host deletes them, as before.
        return [];
      }
    });
  }

  /**
   * Deletes (or, dry run, picks) the unused parts whose copies on this host
   * all went untouched for `after` ms; returns the copies deleted by digest.
   */
  async #deleteOld(
    sizes: ReadonlyMap<string, unknown>,
    after: number,
  ): Promise<Map<string, number>> {
    const { target } = this.#run;
    const stores = await target.localStores();
    const cutoff = Date.now() - after;
    /** Copies on this host of each old unused part. */
    const old = new Map<string, number>();
    for (const digest of sizes.keys()) {
      const held = await untouchedCopies(stores, digest, cutoff);
      if (held) old.set(digest, held);
    }
    if (old.size === 0) return old;
    // Without a dry run, a part a file took up meanwhile is kept and not counted.
    if (this.#run.dryRun) return old;
    const { freed } = await freeUnreferenced(
      { store: target.store, locker: target.locker, stores: () => Promise.resolve(stores) },
      old.keys(),
      { untouchedSince: cutoff },
    );
    return new Map(freed.map((digest) => [digest, old.get(digest)!]));
  }
}
