/**
 * Which key stored which part on one instance, so that a key's unpublished
 * parts can be held to its quota: without it, a writer could fill a disk
 * with parts it never publishes. Each part.put that stores a part appends a
 * line `[digest, size, key]` to `INSTANCE_DIR/stored_by.jsonl`; a part
 * stops counting once a file in the manifest uses it (then the file's owner
 * pays for it at publish) or once it is no longer stored here (freed,
 * repaired away). Those records are dropped when a key nears its quota and
 * when the ledger has grown past its live size, by one walk of the manifest.
 *
 * A copy stored before the ledger existed counts for nobody; a copy one key
 * stored and another re-sent counts for the first.
 */
import { writeFileAtomic } from "../base/fs_util.ts";
import { join } from "../base/paths.ts";
import { type PartStore } from "./store.ts";

/** The ledger is compacted once it holds this many more lines than live records (at least). */
export const PENDING_COMPACT_MIN_LINES = 10_000;
/**
 * How long the set of parts the manifest uses, and a prune's answer, are
 * trusted: a key over its quota that keeps sending must not make every
 * part.put walk the manifest and stat every recorded part. Only while no
 * part was admitted since they were read, though: that part's file may have
 * been published since, and counting its parts again refused a writer's next
 * upload at part.put although it fit (a replace, then a new file within
 * 250 ms, on a busy host).
 */
export const REFERENCED_CACHE_MS = 250;

interface _Record {
  key: string;
  size: number;
  /** Still being received: not in the ledger file yet. */
  receiving: boolean;
  /** Its part.put ended without storing it (released()). */
  released?: boolean;
}

/** Room reserve() claimed for one part.put: stored() or released() must follow. */
export interface Reservation {
  /** The part was stored: records it in the ledger, for this reservation's key and size. */
  stored(): Promise<void>;
  /** The part was not stored after all: the digest's record is what it was before. */
  released(): void;
}

export class PendingParts {
  readonly path: string;
  readonly #store: PartStore;
  readonly #referenced: () => Promise<Set<string>>;
  readonly #records = new Map<string, _Record>();
  #loaded: Promise<void> | undefined;
  /** Lines in the file now. */
  #lines = 0;
  /** File writes, one after another: an append must not land in a file being replaced. */
  #writes: Promise<void> = Promise.resolve();
  #referencedAt = 0;
  /** When the last prune ended (Date.now()). */
  #prunedAt = 0;
  /** Parts admitted so far, and how many had been when the cached answers were read. */
  #admitted = 0;
  #admittedAtReferenced = -1;
  #admittedAtPrune = -1;
  #pruning: Promise<void> | undefined;
  #referencedSet: Promise<Set<string>> | undefined;

  /** `referenced`: every digest a file in the manifest uses (part_gc.ts referencedDigests). */
  constructor(store: PartStore, referenced: () => Promise<Set<string>>) {
    this.#store = store;
    this.path = join(store.root, "stored_by.jsonl");
    this.#referenced = referenced;
  }

  /** Bytes of parts `key` stored here that no file uses yet, as far as the ledger knows. */
  async heldBy(key: string): Promise<number> {
    await this.#load();
    return this.#sum(key);
  }

  /**
   * Claims room for a part `key` is about to store. When `quotaBytes` cannot
   * hold it even after the records of parts now in use or gone are dropped,
   * claims nothing and returns the bytes the key holds; otherwise returns
   * the reservation. A put of a digest stored here already (a copy of
   * another size: rotten, or a lie) does not erase who stored it: released,
   * the record it displaced comes back. Else one bad put per part (a body
   * that fails its digest) wiped each record, and a key stored past its quota.
   */
  async reserve(
    key: string,
    digest: string,
    size: number,
    quotaBytes: number | undefined,
  ): Promise<number | Reservation> {
    await this.#load();
    if (quotaBytes !== undefined && this.#sum(key) + size > quotaBytes) {
      await this.#pruneOnce();
      const held = this.#sum(key);
      if (held + size > quotaBytes) return held;
    }
    const before = this.#records.get(digest);
    const record: _Record = { key, size, receiving: true };
    this.#records.set(digest, record);
    this.#admitted++;
    return {
      stored: () => this.#stored(digest, record),
      released: () => {
        record.released = true;
        if (this.#records.get(digest) !== record) return;
        if (before && !before.released) this.#records.set(digest, before);
        else this.#records.delete(digest);
      },
    };
  }

  /** The part `record` reserved is stored: records it in the ledger. */
  async #stored(digest: string, record: _Record): Promise<void> {
    if (!record.receiving) return;
    record.receiving = false;
    // The copy here is this put's now, whatever was reserved for the digest since.
    this.#records.set(digest, record);
    await this.#write(async () => {
      const line = `${JSON.stringify([digest, record.size, record.key])}\n`;
      await Deno.writeTextFile(this.path, line, { append: true, create: true });
      this.#lines++;
    });
    if (this.#lines > Math.max(PENDING_COMPACT_MIN_LINES, 2 * this.#records.size)) {
      await this.prune();
    }
  }

  /** Drops the records of parts a file now uses or this instance no longer holds. */
  async prune(): Promise<void> {
    await this.#load();
    const referenced = await this.#referencedNow();
    for (const [digest, record] of [...this.#records]) {
      if (record.receiving) continue;
      if (referenced.has(digest) || (await this.#store.sizeOf(digest)) === undefined) {
        this.#records.delete(digest);
      }
    }
    await this.#write(async () => {
      const kept = [...this.#records].filter(([, r]) => !r.receiving);
      const lines = kept.map(([digest, r]) => `${JSON.stringify([digest, r.size, r.key])}\n`);
      // Not durable: a ledger a power loss leaves short only under-counts until the next put.
      await writeFileAtomic(this.path, lines.join(""), { durable: false });
      this.#lines = kept.length;
    });
  }

  /**
   * Prunes, sharing a prune under way (parts of one upload arrive together)
   * and reusing the last one's answer for REFERENCED_CACHE_MS: a key over its
   * quota that keeps sending gets that answer meanwhile.
   */
  async #pruneOnce(): Promise<void> {
    if (this.#pruning) return await this.#pruning;
    if (
      Date.now() - this.#prunedAt < REFERENCED_CACHE_MS && this.#admittedAtPrune === this.#admitted
    ) {
      return;
    }
    this.#admittedAtPrune = this.#admitted;
    const pruning = this.prune().finally(() => {
      this.#pruning = undefined;
      this.#prunedAt = Date.now();
    });
    this.#pruning = pruning;
    await pruning;
  }

  #sum(key: string): number {
    let total = 0;
    for (const record of this.#records.values()) if (record.key === key) total += record.size;
    return total;
  }

  #referencedNow(): Promise<Set<string>> {
    if (
      !this.#referencedSet || Date.now() - this.#referencedAt >= REFERENCED_CACHE_MS ||
      this.#admittedAtReferenced !== this.#admitted
    ) {
      this.#referencedAt = Date.now();
      this.#admittedAtReferenced = this.#admitted;
      const set = this.#referenced();
      this.#referencedSet = set;
      set.catch(() => {
        if (this.#referencedSet === set) this.#referencedSet = undefined;
      });
    }
    return this.#referencedSet;
  }

  #load(): Promise<void> {
    return this.#loaded ??= (async () => {
      for (const value of await _readLines(this.path)) {
        if (!Array.isArray(value)) continue;
        const [digest, size, key] = value;
        if (typeof digest !== "string" || typeof key !== "string") continue;
        if (!Number.isSafeInteger(size) || size < 0) continue;
        this.#records.set(digest, { key, size, receiving: false });
        this.#lines++;
      }
    })();
  }

  #write(work: () => Promise<void>): Promise<void> {
    const next = this.#writes.then(work);
    this.#writes = next.catch(() => {});
    return next;
  }
}

/** Each line of a JSON-lines file that parses (a line cut off by a kill does not). */
async function _readLines(path: string): Promise<unknown[]> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return [];
    throw error;
  }
  return text.split("\n").flatMap((line) => {
    try {
      return line === "" ? [] : [JSON.parse(line)];
    } catch {
      return [];
    }
  });
}
