/**
 * What a repair reads from and writes to the manifest: the parts it wants
 * (every distinct digest, where it is used and where it is listed), the
 * replica changes it notes per part and writes in batches, and the surplus
 * copies it deletes once they have left the manifest. Every write happens
 * under the parts lock as a change to parts with given digests only, so
 * files published, replaced or removed meanwhile survive.
 */
import { type FileEntry } from "../state/manifest.ts";
import { allEntries, PARTS_LOCK, walkWhole } from "../state/manifest_store.ts";
import { rankAcrossDomains } from "../state/placement.ts";
import { MANIFEST_FLUSH_INTERVAL_MS } from "./repair_options.ts";
import { type RepairRun, type WantedPart } from "./repair_run.ts";

/** Entries one manifest change of a repair names at most (etcd caps a transaction's operations). */
export const NAMES_PER_CHANGE = 50;

interface _ReplicaChange {
  add: Set<string>;
  remove: Set<string>;
}

export class RepairManifest {
  readonly #run: RepairRun;
  readonly #changes = new Map<string, _ReplicaChange>();
  /** The file entries as this repair read them (_entryKey); only they lose listed copies. */
  readonly #seen = new Set<string>();
  #lastFlush = performance.now();

  constructor(run: RepairRun) {
    this.#run = run;
  }

  /** The parts the manifest references, by digest. */
  async readWanted(): Promise<Map<string, WantedPart>> {
    return await walkWhole(async () => {
      const wanted = new Map<string, WantedPart>();
      this.#seen.clear();
      for await (const { entry: file } of allEntries(this.#run.target.store)) {
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
    });
  }

  /**
   * Notes the manifest change that makes a part's listing match `final`, the
   * good copies it has now. Copies on down instances stay listed unless the
   * part has R good copies without them, or they are in their grace period.
   */
  record(part: WantedPart, final: Set<string>): void {
    const add = new Set([...final].filter((id) => !part.listed.has(id)));
    const remove = new Set<string>();
    for (const id of part.listed) {
      if (final.has(id)) continue;
      const live = this.#run.stored.has(id);
      const waited = this.#run.inGrace(id);
      if (live || (!waited && final.size >= this.#run.replicas)) remove.add(id);
    }
    if (add.size > 0 || remove.size > 0) this.#changes.set(part.digest, { add, remove });
  }

  /** Writes the noted changes into the manifest, as changes to parts with those digests only. */
  async flush(): Promise<void> {
    this.#lastFlush = performance.now();
    if (this.#changes.size === 0) return;
    const changes = new Map(this.#changes);
    this.#changes.clear();
    if (this.#run.dryRun) {
      this.#run.report.manifestParts += changes.size;
      return;
    }
    const { target } = this.#run;
    // Whether `id` stores the part now, checked once per copy.
    const present = new Map<string, Promise<boolean>>();
    const storedNow = (id: string, digest: string, size: number): Promise<boolean> => {
      const key = `${id}:${digest}`;
      let answer = present.get(key);
      if (!answer) {
        answer = target.storedSize(id, digest).then((got) => got === size);
        present.set(key, answer);
      }
      return answer;
    };
    const store = target.store;
    const updated = await target.locker.withLock(PARTS_LOCK, async () => {
      // Re-read: files added, replaced or removed meanwhile are handled by
      // digest, so only parts with these exact bytes change.
      const names = await walkWhole(async () => {
        const names: string[] = [];
        for await (const { entry } of allEntries(store)) {
          if (entry.parts.some((part) => changes.has(part.digest))) names.push(entry.name);
        }
        return names;
      });
      // In batches: a change is one transaction, and etcd caps the operations
      // of one (128 by default); each batch is whole on its own.
      let updated = 0;
      for (let start = 0; start < names.length; start += NAMES_PER_CHANGE) {
        const batch = names.slice(start, start + NAMES_PER_CHANGE);
        updated += await this.#recordBatch(batch, changes, storedNow);
      }
      return updated;
    });
    this.#run.report.manifestParts += updated;
    if (updated > 0) this.#run.emit({ type: "manifest", parts: updated });
  }

  /** Writes the noted replica changes into the entries `names`, as one change. */
  async #recordBatch(
    names: string[],
    changes: Map<string, _ReplicaChange>,
    storedNow: (id: string, digest: string, size: number) => Promise<boolean>,
  ): Promise<number> {
    const { target } = this.#run;
    const outcome = await target.store.change(names, async (current) => {
      const puts: FileEntry[] = [];
      let count = 0;
      for (const { entry: file } of current.values()) {
        let changed = false;
        const parts = [];
        for (const part of file.parts) {
          const change = changes.get(part.digest);
          const next = new Set(part.replicas);
          if (change) {
            // An entry published since (an rm and a re-upload) lists copies its
            // publish found stored under this lock, fresher than the census: a
            // removal meant for a surplus copy would also let deleteDropped
            // delete a copy that entry relies on.
            if (this.#seen.has(_entryKey(file))) {
              for (const id of change.remove) next.delete(id);
            }
            for (const id of change.add) {
              // A copy made earlier may be gone by now: an rm freed the part
              // (part_gc.ts, under this lock) and a re-upload listed other holders.
              if (!next.has(id) && await storedNow(id, part.digest, part.size)) next.add(id);
            }
          }
          const replicas = change
            ? rankAcrossDomains(part.digest, [...next], target.view.domain)
            : part.replicas;
          if (replicas.join() !== part.replicas.join()) {
            changed = true;
            count++;
          }
          parts.push({ ...part, replicas });
        }
        if (changed) puts.push({ ...file, parts });
      }
      return { puts, result: count };
    });
    return outcome.result;
  }

  /**
   * Deletes surplus copies that have left the manifest. Under the parts
   * lock, and only where no file lists the copy now: a publish that meanwhile
   * named it (it checks copies under the same lock) keeps it.
   *
   * The target removes the file where the instance keeps it (on this host
   * only: a network delete op would first need a signed request), and tells
   * the other hosts of theirs. Returns the copies deleted here, as "ID:DIGEST".
   */
  async deleteDropped(drops: { id: string; digest: string }[]): Promise<Set<string>> {
    const { target } = this.#run;
    return await target.locker.withLock(PARTS_LOCK, async () => {
      const listed = await walkWhole(async () => {
        const listed = new Set<string>();
        for await (const { entry: file } of allEntries(target.store)) {
          for (const part of file.parts) {
            for (const id of part.replicas) listed.add(`${id}:${part.digest}`);
          }
        }
        return listed;
      });
      const deleted = new Set<string>();
      // Copies on other hosts' instances: their hosts delete them, told of them now, while
      // no file lists them (etcd_freed_parts.ts); an announcement that fails leaves them to a
      // repair on their host.
      const elsewhere = drops.filter(({ id, digest }) =>
        !target.removesCopiesOn(id) && !listed.has(`${id}:${digest}`)
      );
      if (elsewhere.length > 0 && target.announceUnlisted) {
        await target.announceUnlisted(elsewhere).then(
          () => this.#run.report.droppedElsewhere += elsewhere.length,
          () => {},
        );
      }
      for (const { id, digest } of drops) {
        if (listed.has(`${id}:${digest}`)) continue;
        try {
          if (await target.removeCopy(id, digest)) deleted.add(`${id}:${digest}`);
        } catch (error) {
          // One store that refuses (read-only, say) must not stop the run: said, and left.
          this.#run.report.failedDrops++;
          const reason = error instanceof Error ? error.message : String(error);
          this.#run.emit({ type: "drop-failed", id, digest, reason });
        }
      }
      return deleted;
    });
  }

  /** Writes the noted changes once MANIFEST_FLUSH_INTERVAL_MS have passed since the last write. */
  async flushIfDue(): Promise<void> {
    if (performance.now() - this.#lastFlush > MANIFEST_FLUSH_INTERVAL_MS) await this.flush();
  }
}

/** Names one published entry; a rename keeps it, a re-upload (even of the same bytes) does not. */
function _entryKey(file: FileEntry): string {
  return JSON.stringify([file.owner, file.contentId, file.created]);
}
