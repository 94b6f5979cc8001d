/**
 * The manifest store in etcd: the second implementation of ManifestStore
 * (state/manifest_store.ts), for a cluster that spans hosts. Its revision is
 * etcd's, and each entry's modRevision the mod revision of its key.
 *
 * 1. An entry lives at `files/NAME` as its header (name, size, part size,
 *    content id, owner, created, part count) with its parts inline when they
 *    are few; a longer part list is split into chunks of PARTS_PER_CHUNK parts
 *    at `chunks/ID`, written first, so that no request comes near etcd's
 *    1.5 MiB limit (a 1 TiB file in 8 MiB parts is 64 chunks).
 * 2. A chunk belongs to one version of one entry (its id is random): once
 *    the transaction that replaces or deletes the entry commits, its chunks
 *    are deleted, and a transaction that loses its race deletes the chunks
 *    it wrote.
 * 3. `change()` reads the named keys in one transaction (one revision), runs
 *    the plan, and commits with a compare on each key's mod revision (0 for
 *    an absent key): exactly a compare-and-swap, retried on conflict.
 * 4. `list()` and `summaries()` page through `files/` in key order; a walk
 *    asks for later pages at the first page's revision, so a walk of the
 *    whole manifest sees one revision while writers go on.
 * 5. `publishedBytes()` keeps each owner's bytes in memory (owner_tally.ts),
 *    from one walk and then a watch of the files and of `files0` (the key
 *    just past every file's) from the walk's revision on; each call writes
 *    `files0` and waits until the watch has passed that write, so it has
 *    every change before the call, deletes included, and reads nothing else.
 * 6. `watch()` follows etcd's watch of `files/`, resuming after the last
 *    revision it saw when the stream breaks, and reports a reset when that
 *    revision was compacted away.
 */
import type { EtcdClient, KeyValue, TxnOp } from "./etcd_client.ts";
import { type ClusterKeys } from "./etcd_keys.ts";
import { sleep } from "../base/sleep.ts";
import { deadline } from "../base/deadline.ts";
import { type FileEntry, parseFileEntry, type PartEntry } from "../state/manifest.ts";
import {
  type ChangeFunction,
  type ChangeOutcome,
  checkManyNames,
  type ListOptions,
  type ListPage,
  type ManifestEvent,
  type ManifestStore,
  MAX_CHANGE_ATTEMPTS,
  MAX_NAMES_PER_READ,
  pageLimit,
  type StoredEntry,
  type SummaryPage,
  type UsedDigestsPage,
} from "../state/manifest_store.ts";
import { mayNameAny } from "../state/manifest_snapshot.ts";
import { type OwnerTally, walkTally } from "../state/owner_tally.ts";

/** Parts per chunk key: ~300 bytes a part keeps a chunk near 600 KB, well under etcd's limit. */
export const PARTS_PER_CHUNK = 2048;
/** Parts kept inline in the entry's own key; a longer list goes to chunks. */
export const MAX_INLINE_PARTS = 16;
/** Entries one change may name: etcd caps a transaction at 128 operations by default. */
export const MAX_NAMES_PER_CHANGE = 64;
/** Chunk writes in flight at once while a long part list is stored. */
const CHUNK_WRITES_AT_ONCE = 4;
/** How an entry header whose parts are in chunks says so (usedDigests looks for it as text). */
const _CHUNKS_FIELD = '"chunks":';
/** Keys of entries written since a revision asked at a time (writtenSince). */
const _CHANGED_KEYS_PAGE = 1_000;
/** Pause before a broken watch stream is opened again. */
const WATCH_RETRY_MS = 500;
/** How long bringing the owners' tally up to date may take before it walks every entry instead. */
const TALLY_CATCH_UP_MS = 10_000;
/** Times publishedBytes() starts from a walk before giving up. */
const MAX_TALLY_WALKS = 3;

/** publishedBytes()'s tally, the watch that keeps it current, and who waits for it. */
interface _Follow {
  tally: OwnerTally;
  abort: AbortController;
  /** Its watch ended for good (history compacted) or was stopped: walk again. */
  broken: boolean;
  /** Called after each batch applied, with false when the watch ends. */
  waiters: Set<(ok: boolean) => void>;
}

/** The value at `files/NAME`. */
interface _Header {
  name: string;
  size: number;
  partSize: number;
  contentId: string;
  owner: string;
  created: string;
  partCount: number;
  parts?: PartEntry[];
  chunks?: string[];
}

function _header(entry: FileEntry, chunks: string[] | undefined): _Header {
  const { parts, ...rest } = entry;
  return chunks === undefined
    ? { ...rest, partCount: parts.length, parts }
    : { ...rest, partCount: parts.length, chunks };
}

function _parseHeader(kv: KeyValue): _Header {
  try {
    const value = JSON.parse(kv.value) as _Header;
    if (typeof value !== "object" || value === null || typeof value.name !== "string") {
      throw new TypeError("not an entry header");
    }
    return value;
  } catch (cause) {
    throw new SyntaxError(`Manifest is malformed: etcd key ${kv.key} holds no entry`, { cause });
  }
}

export class EtcdManifestStore implements ManifestStore {
  /**
   * etcd 3.4 counts every key to the end of the range it is asked a page of,
   * so a walk costs it time that grows with the square of the manifest over
   * the page size: `fts ls` of 100,000 files took 3.2-3.4 s in pages of
   * 1,000, 2.1 s in pages of 10,000 (about 5 MB of JSON each).
   */
  readonly walkPageEntries = 10_000;
  readonly #etcd: EtcdClient;
  readonly #keys: ClusterKeys;
  /** Entries are read with ParseOptions.storedContentId: set by a serving instance. */
  storedContentIds = false;
  /** Each owner's published bytes, once asked for (publishedBytes()), and its watch. */
  #follow: Promise<_Follow> | undefined;
  #closed = false;

  constructor(etcd: EtcdClient, keys: ClusterKeys) {
    this.#etcd = etcd;
    this.#keys = keys;
  }

  async revision(): Promise<number> {
    // Any read's header carries etcd's current revision: one key, not a count
    // of every file's (20 ms at 100,000 files, paid by every hello).
    return (await this.#etcd.range(this.#keys.files, { keysOnly: true })).revision;
  }

  async get(name: string): Promise<StoredEntry | undefined> {
    const found = await this.#etcd.range(this.#keys.file(name));
    const kv = found.kvs[0];
    if (!kv) return undefined;
    return await this.#stored(kv, found.revision);
  }

  async getMany(names: readonly string[]): Promise<(StoredEntry | undefined)[]> {
    checkManyNames(names);
    if (names.length === 0) return [];
    // One transaction of reads: one round trip, every entry as of one revision.
    const read = await this.#etcd.txn(
      [],
      names.map((name) => ({ range: { key: this.#keys.file(name) } })),
    );
    return await Promise.all(names.map((_, i) => {
      const kv = read.ranges[i]?.[0];
      return kv ? this.#stored(kv, read.revision) : undefined;
    }));
  }

  /**
   * The entries written after `revision`, as they are now; those not written
   * since are not read (etcd filters the keys by their mod revision). For
   * freeing copies that no entry used or listed at `revision`
   * (etcd_freed_parts.ts): under the parts lock, only these can now.
   */
  async *writtenSince(revision: number): AsyncGenerator<FileEntry> {
    let start = this.#keys.files;
    while (true) {
      const page = await this.#etcd.range(start, {
        rangeEnd: this.#keys.filesEnd,
        keysOnly: true,
        minModRevision: revision + 1,
        limit: _CHANGED_KEYS_PAGE,
      });
      const names = page.kvs.map((kv) => this.#keys.nameOfFile(kv.key));
      for (let i = 0; i < names.length; i += MAX_NAMES_PER_READ) {
        for (const found of await this.getMany(names.slice(i, i + MAX_NAMES_PER_READ))) {
          if (found) yield found.entry;
        }
      }
      const last = page.kvs.at(-1);
      if (!page.more || last === undefined) return;
      start = `${last.key}\0`;
    }
  }

  async list(options: ListOptions = {}): Promise<ListPage> {
    const page = await this.#page(options);
    const entries = await Promise.all(page.kvs.map((kv) => this.#stored(kv, page.revision)));
    return { entries, revision: page.revision, more: page.more };
  }

  /**
   * Which of `candidates` a page of entries uses, parsing only the entries
   * whose text may name one (mayNameAny) and those whose parts are in chunks.
   * A page is at least walkPageEntries long, whatever `options.limit` asks:
   * etcd counts to the range's end for each page, and only the digests found
   * are kept. Freeing one file's parts at 100,000 files parsed every entry:
   * 3.2-5.2 s.
   */
  async usedDigests(
    candidates: ReadonlySet<string>,
    options: ListOptions = {},
  ): Promise<UsedDigestsPage> {
    const page = await this.#page({
      ...options,
      limit: Math.max(pageLimit(options), this.walkPageEntries),
    });
    const used = new Set<string>();
    await Promise.all(page.kvs.map(async (kv) => {
      if (!mayNameAny(kv.value, candidates) && !kv.value.includes(_CHUNKS_FIELD)) return;
      const { entry } = await this.#stored(kv, page.revision);
      for (const part of entry.parts) if (candidates.has(part.digest)) used.add(part.digest);
    }));
    const last = page.kvs.at(-1);
    return {
      used: [...used],
      last: last && this.#keys.nameOfFile(last.key),
      revision: page.revision,
      more: page.more,
    };
  }

  async summaries(options: ListOptions = {}): Promise<SummaryPage> {
    const page = await this.#page(options);
    const summaries = page.kvs.map((kv) => {
      const header = _parseHeader(kv);
      return {
        name: header.name,
        size: header.size,
        parts: header.partCount,
        owner: header.owner,
        created: header.created,
      };
    });
    return { summaries, revision: page.revision, more: page.more };
  }

  async #page(options: ListOptions) {
    const limit = pageLimit(options);
    const start = options.after === undefined
      ? this.#keys.files
      : `${this.#keys.file(options.after)}\0`;
    const page = await this.#etcd.range(start, {
      rangeEnd: this.#keys.filesEnd,
      limit,
      ...(options.atRevision ? { revision: options.atRevision } : {}),
    });
    // etcd's header says its newest revision; a read in the past was at the one asked for.
    return options.atRevision ? { ...page, revision: options.atRevision } : page;
  }

  /** The entry a `files/` key holds, with its chunks read at `revision`. */
  async #stored(kv: KeyValue, revision: number): Promise<StoredEntry> {
    const header = _parseHeader(kv);
    let parts: unknown[];
    if (header.chunks === undefined) {
      parts = header.parts ?? [];
    } else {
      const chunks = await Promise.all(header.chunks.map(async (id) => {
        const chunk = await this.#etcd.get(this.#keys.chunk(id), { revision: kv.modRevision });
        if (!chunk) {
          throw new SyntaxError(
            `Manifest is malformed: chunk ${id} of "${header.name}" is missing`,
          );
        }
        return JSON.parse(chunk.value) as unknown[];
      }));
      parts = chunks.flat();
    }
    const { chunks: _chunks, partCount: _count, ...rest } = header;
    const entry = parseFileEntry({ ...rest, parts }, { storedContentId: this.storedContentIds });
    return { entry, modRevision: kv.modRevision, revision };
  }

  async publishedBytes(owner: string, except?: string): Promise<number> {
    for (let walks = 0;;) {
      // Shared: callers at once (cluster.info asks outside the parts lock) wait for one walk.
      let pending = this.#follow;
      if (!pending) {
        walks++;
        pending = this.#follow = this.#startFollowing();
      }
      const follow = await pending.catch((error) => {
        if (this.#follow === pending) this.#follow = undefined;
        throw error;
      });
      if (await this.#caughtUp(follow).catch(() => false)) {
        return follow.tally.bytesOf(owner, except);
      }
      // History compacted away, or the watch stuck: walk again.
      this.#stopFollowing(follow);
      if (this.#follow === pending) this.#follow = undefined;
      if (walks >= MAX_TALLY_WALKS) throw new Error("Cannot count the files' bytes in etcd");
    }
  }

  /** Stops the watch that keeps publishedBytes()'s tally current. */
  close(): void {
    this.#closed = true;
    this.#follow?.then((follow) => this.#stopFollowing(follow), () => {});
  }

  /** A tally of every entry, and a watch from its revision on that keeps it current. */
  async #startFollowing(): Promise<_Follow> {
    const tally = await walkTally(this);
    const follow: _Follow = {
      tally,
      abort: new AbortController(),
      broken: false,
      waiters: new Set(),
    };
    if (this.#closed) this.#stopFollowing(follow);
    else void this.#followLoop(follow);
    return follow;
  }

  #stopFollowing(follow: _Follow): void {
    follow.broken = true;
    follow.abort.abort();
    for (const waiter of follow.waiters) waiter(false);
    follow.waiters.clear();
  }

  /**
   * Applies every change to the files after the tally's revision as etcd
   * sends it, and the fence writes, resuming a broken stream where it was; a
   * watcher that keeps up gets each change at once, where one opened behind
   * the newest revision waits for etcd's catch-up loop (100 ms).
   */
  async #followLoop(follow: _Follow): Promise<void> {
    const { tally, abort } = follow;
    while (!abort.signal.aborted) {
      try {
        const batches = this.#etcd.watch(
          this.#keys.files,
          tally.revision + 1,
          abort.signal,
          `${this.#keys.filesFence}\0`,
        );
        for await (const batch of batches) {
          if (batch.compactRevision !== undefined) return this.#stopFollowing(follow);
          for (const { type, kv } of batch.events) {
            if (kv.key !== this.#keys.filesFence) {
              const name = this.#keys.nameOfFile(kv.key);
              if (type === "DELETE") tally.delete(name);
              else {
                const header = _parseHeader(kv);
                tally.set(name, header.owner, header.size);
              }
            }
            tally.revision = Math.max(tally.revision, kv.modRevision);
          }
          for (const waiter of follow.waiters) waiter(true);
        }
      } catch (error) {
        if (abort.signal.aborted) return;
        void error; // A broken stream: open it again from the last revision applied.
      }
      await sleep(WATCH_RETRY_MS, abort.signal);
    }
  }

  /** Whether the tally has every change up to a fence written now (within TALLY_CATCH_UP_MS). */
  async #caughtUp(follow: _Follow): Promise<boolean> {
    if (follow.broken) return false;
    const fence = await this.#etcd.put(this.#keys.filesFence, "");
    return await new Promise<boolean>((resolve) => {
      const waiter = (ok: boolean) => {
        if (ok && !follow.broken && follow.tally.revision < fence) return;
        follow.waiters.delete(waiter);
        cancel();
        resolve(ok && !follow.broken);
      };
      const cancel = deadline(TALLY_CATCH_UP_MS, () => waiter(false));
      follow.waiters.add(waiter);
      waiter(true);
    });
  }

  async change<T>(names: readonly string[], plan: ChangeFunction<T>): Promise<ChangeOutcome<T>> {
    const named = [...new Set(names)];
    if (named.length > MAX_NAMES_PER_CHANGE) {
      // Each name is a read, a compare and a put or delete in one transaction.
      throw new RangeError(
        `A change in etcd names at most ${MAX_NAMES_PER_CHANGE} entries, not ${named.length}`,
      );
    }
    for (let attempt = 1; attempt <= MAX_CHANGE_ATTEMPTS; attempt++) {
      // One transaction of reads: every named entry as of one revision.
      const read = await this.#etcd.txn(
        [],
        named.map((name) => ({ range: { key: this.#keys.file(name) } })),
      );
      const current = new Map<string, StoredEntry>();
      const headers = new Map<string, _Header>();
      const modRevisions = new Map<string, number>();
      for (const [i, name] of named.entries()) {
        const kv = read.ranges[i]?.[0];
        modRevisions.set(name, kv?.modRevision ?? 0);
        if (!kv) continue;
        headers.set(name, _parseHeader(kv));
        current.set(name, await this.#stored(kv, read.revision));
      }
      const decided = await plan(current, read.revision);
      const puts = decided.puts ?? [];
      const deletes = decided.deletes ?? [];
      for (const name of [...puts.map((e) => e.name), ...deletes]) {
        if (!modRevisions.has(name)) {
          throw new TypeError(`A change may only touch the names it read, not ${name}`);
        }
      }
      if (puts.length === 0 && deletes.length === 0) {
        return { result: decided.result, revision: read.revision, changed: false };
      }
      const written: string[] = [];
      const ops: TxnOp[] = [];
      for (const entry of puts) {
        const chunks = await this.#writeChunks(entry.parts, written);
        ops.push({
          put: { key: this.#keys.file(entry.name), value: JSON.stringify(_header(entry, chunks)) },
        });
      }
      for (const name of deletes) ops.push({ deleteRange: { key: this.#keys.file(name) } });
      const committed = await this.#etcd.txn(
        named.map((name) => ({
          key: this.#keys.file(name),
          target: "MOD" as const,
          result: "EQUAL" as const,
          modRevision: modRevisions.get(name)!,
        })),
        ops,
      );
      if (committed.succeeded) {
        // The chunks of every version this change replaced or deleted go now,
        // outside the transaction (etcd caps its operations): only that
        // version named them, and a walk pinned before this revision still
        // reads them there, as etcd keeps the history until it is compacted.
        const replaced = new Set([...puts.map((e) => e.name), ...deletes]);
        const stale = [...replaced].flatMap((name) => headers.get(name)?.chunks ?? []);
        await this.#deleteChunks(stale);
        return { result: decided.result, revision: committed.revision, changed: true };
      }
      await this.#deleteChunks(written);
    }
    throw new Error(
      `Cannot change ${named.map((n) => JSON.stringify(n)).join(", ")} in etcd: ` +
        `other changes to them came first ${MAX_CHANGE_ATTEMPTS} times`,
    );
  }

  /** Deletes chunks no entry names any more, a few at a time; one left behind only wastes space. */
  async #deleteChunks(ids: readonly string[]): Promise<void> {
    for (let i = 0; i < ids.length; i += CHUNK_WRITES_AT_ONCE) {
      await Promise.all(
        ids.slice(i, i + CHUNK_WRITES_AT_ONCE).map((id) =>
          this.#etcd.deleteRange(this.#keys.chunk(id)).catch(() => 0)
        ),
      );
    }
  }

  /** Writes a long part list as chunks (ids noted in `written`); undefined when it stays inline. */
  async #writeChunks(parts: PartEntry[], written: string[]): Promise<string[] | undefined> {
    if (parts.length <= MAX_INLINE_PARTS) return undefined;
    const ids: string[] = [];
    for (let start = 0; start < parts.length; start += PARTS_PER_CHUNK) {
      ids.push(crypto.randomUUID());
    }
    // A few at a time: each is a fsynced write of ~600 KB on the etcd side.
    for (let i = 0; i < ids.length; i += CHUNK_WRITES_AT_ONCE) {
      await Promise.all(
        ids.slice(i, i + CHUNK_WRITES_AT_ONCE).map(async (id, k) => {
          const start = (i + k) * PARTS_PER_CHUNK;
          written.push(id);
          await this.#etcd.put(
            this.#keys.chunk(id),
            JSON.stringify(parts.slice(start, start + PARTS_PER_CHUNK)),
          );
        }),
      );
    }
    return ids;
  }

  async *watch(fromRevision: number, signal?: AbortSignal): AsyncGenerator<ManifestEvent> {
    let seen = fromRevision;
    while (!signal?.aborted) {
      try {
        for await (const batch of this.#etcd.watch(this.#keys.files, seen + 1, signal)) {
          if (batch.compactRevision !== undefined) {
            seen = batch.compactRevision;
            yield { type: "reset", revision: batch.compactRevision };
            break;
          }
          // One transaction is one revision: group the batch's events by revision.
          const byRevision = new Map<number, { puts: string[]; deletes: string[] }>();
          for (const { type, kv } of batch.events) {
            let change = byRevision.get(kv.modRevision);
            if (!change) byRevision.set(kv.modRevision, change = { puts: [], deletes: [] });
            const name = this.#keys.nameOfFile(kv.key);
            (type === "PUT" ? change.puts : change.deletes).push(name);
          }
          for (const [revision, change] of [...byRevision].sort((a, b) => a[0] - b[0])) {
            seen = revision;
            yield { type: "change", revision, ...change };
          }
        }
      } catch (error) {
        if (signal?.aborted) return;
        void error; // A broken stream: open it again from the last revision seen.
      }
      await sleep(WATCH_RETRY_MS, signal);
    }
  }
}
