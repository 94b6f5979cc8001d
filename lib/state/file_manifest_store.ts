/**
 * The manifest store on files in the data directory (FORMATS.md, "Manifest"),
 * built so that one change costs the same at 100 entries and at 100,000:
 *
 * 1. `manifest.json` is the snapshot, one entry a line (manifest_layout.ts);
 *    `manifest.journal` holds the changes since, each appended whole (all its
 *    puts and deletes, with its generation) and fsynced, under manifest.lock.
 * 2. Readers index names to lines (manifest_index.ts) and parse one entry per
 *    lookup; they read only journal bytes appended since their last look. A
 *    content id is computed when its entry is parsed, not on every change.
 *    Until a reader reads an entry, revision() reads only the headers
 *    (manifest_revision.ts), so an instance only asked hello builds no index.
 * 3. `change()` reads the named entries, runs the caller's pure function
 *    without any lock, then under the lock commits only if those entries'
 *    revisions are unchanged (else runs it again).
 * 4. When the journal outgrows COMPACT_JOURNAL_SHARE of the snapshot, the
 *    writer folds it into a new snapshot (temp, fsync, rename) and replaces
 *    the journal with an empty one, so the cost per change stays constant on
 *    average. Readers that opened the old files keep reading them whole.
 *
 * Crash rules: a torn last change is ignored by readers and cut off by the
 * next writer; journal changes at or below the snapshot's generation are
 * already in it (a crash between the two renames) and are skipped.
 */
import { sleep } from "../base/sleep.ts";
import { withFileLock } from "../base/lock.ts";
import { removeStaleTemps, writeFileAtomic } from "../base/fs_util.ts";
import { join } from "../base/paths.ts";
import { type FileEntry, parseFileEntry } from "./manifest.ts";
import { changeHeader, entryLine, layoutDocument } from "./manifest_layout.ts";
import {
  type EntrySlot,
  fileId,
  JournalGapError,
  ManifestIndex,
  snapshotId,
} from "./manifest_index.ts";
import {
  digestsUsedIn,
  entryOf,
  type ManifestFiles,
  readSlots,
  summaryOf,
  valueIn,
  valueOf,
  writeSnapshot,
} from "./manifest_snapshot.ts";
import { readRevision, type RevisionMark } from "./manifest_revision.ts";
import { type OwnerTally, walkTally } from "./owner_tally.ts";
import {
  type ChangeFunction,
  type ChangeOutcome,
  checkManyNames,
  LIST_PAGE_ENTRIES,
  type ListOptions,
  type ListPage,
  type ManifestEvent,
  type ManifestStore,
  MAX_CHANGE_ATTEMPTS,
  pageLimit,
  type StoredEntry,
  type SummaryPage,
  type UsedDigestsPage,
} from "./manifest_store.ts";

/** The journal is folded into a new snapshot once it is this share of the snapshot's size. */
export const COMPACT_JOURNAL_SHARE = 0.5;
/** How often `watch()` looks for new changes, in milliseconds. */
export const WATCH_POLL_MS = 100;
/** Times a read starts over when a compaction replaced the files under it. */
const MAX_READ_ATTEMPTS = 10;
/** Parsed entries kept for repeated lookups of the same names. */
const MAX_CACHED_ENTRIES = 64;

const _encoder = new TextEncoder();

interface _Change {
  puts: [string, string][];
  deletes: string[];
}

export class FileManifestStore implements ManifestStore {
  /** `fts ls` of 100,000 entries: 0.85-0.94 s in pages of 1,000, 1.1 s in pages of 10,000. */
  readonly walkPageEntries = LIST_PAGE_ENTRIES;
  readonly dir: string;
  readonly #snapshotPath: string;
  readonly #journalPath: string;
  readonly #lockPath: string;
  #index: ManifestIndex | undefined;
  /** The revision read from the files' headers while there is no index. */
  #mark: RevisionMark | undefined;
  #queue: Promise<unknown> = Promise.resolve();
  readonly #cache = new Map<string, StoredEntry>();
  /** Each owner's published bytes, once asked for (publishedBytes()). */
  #tally: Promise<OwnerTally> | undefined;

  /**
   * Entries are read with ParseOptions.storedContentId (see manifest.ts): set
   * by a serving instance, for the store it shares with its mutations.
   */
  storedContentIds = false;

  constructor(dir: string) {
    this.dir = dir;
    this.#snapshotPath = join(dir, "manifest.json");
    this.#journalPath = join(dir, "manifest.journal");
    this.#lockPath = join(dir, "manifest.lock");
  }

  async revision(): Promise<number> {
    // Until an entry is read, the headers tell the revision: no index is built.
    if (!this.#index) {
      const read = await this.#enqueue(() =>
        this.#withFiles(async (files) => {
          const mark = await readRevision(files, this.#mark);
          this.#mark = mark;
          return mark?.revision;
        })
      );
      if (read !== undefined) return read;
    }
    return await this.#read((index) => Promise.resolve(index.revision));
  }

  get(name: string): Promise<StoredEntry | undefined> {
    return this.#read((index, files) => this.#entryAt(index, files, name));
  }

  async getMany(names: readonly string[]): Promise<(StoredEntry | undefined)[]> {
    checkManyNames(names);
    return await this.#read(async (index, files) => {
      const found: (StoredEntry | undefined)[] = [];
      for (const name of names) found.push(await this.#entryAt(index, files, name));
      return found;
    });
  }

  async list(options: ListOptions = {}): Promise<ListPage> {
    const page = await this.#page(options, (name, slot, line, revision) => ({
      entry: entryOf(name, valueIn(slot, line), { storedContentId: this.storedContentIds }),
      modRevision: slot.revision,
      revision,
    }));
    return { entries: page.items, revision: page.revision, more: page.more };
  }

  async summaries(options: ListOptions = {}): Promise<SummaryPage> {
    const page = await this.#page(
      options,
      (name, slot, line) => summaryOf(name, valueIn(slot, line)),
    );
    return { summaries: page.items, revision: page.revision, more: page.more };
  }

  /** Which candidates a page of entries uses, parsing only the lines that name one. */
  async usedDigests(
    candidates: ReadonlySet<string>,
    options: ListOptions = {},
  ): Promise<UsedDigestsPage> {
    const page = await this.#page(
      options,
      (_, slot, line) => digestsUsedIn(slot, line, candidates),
    );
    return { used: page.items.flat(), last: page.last, revision: page.revision, more: page.more };
  }

  /** One page of entries in name order, each made into a T by `each` from its line. */
  #page<T>(
    options: ListOptions,
    each: (name: string, slot: EntrySlot, line: Uint8Array, revision: number) => T,
  ): Promise<{ items: T[]; last: string | undefined; revision: number; more: boolean }> {
    const limit = pageLimit(options);
    return this.#read(async (index, files) => {
      const names = index.sortedNames();
      const start = options.after === undefined ? 0 : _firstAfter(names, options.after);
      const page = names.slice(start, start + limit);
      const slots = page.map((name) => index.slot(name)!);
      const lines = await readSlots(slots, files);
      const items = page.map((name, i) => each(name, slots[i]!, lines[i]!, index.revision));
      const more = start + limit < names.length;
      return { items, last: page.at(-1), revision: index.revision, more };
    });
  }

  async publishedBytes(owner: string, except?: string): Promise<number> {
    for (let attempt = 1;; attempt++) {
      // Shared: callers at once (cluster.info asks outside the parts lock) wait for one walk.
      const pending = this.#tally ??= walkTally(this);
      const tally = await pending.catch((error) => {
        if (this.#tally === pending) this.#tally = undefined;
        throw error;
      });
      if (await this.#read((index, files) => _catchUp(tally, index, files))) {
        return tally.bytesOf(owner, except);
      }
      // The changes since are no longer remembered (another process compacted): walk again.
      if (this.#tally === pending) this.#tally = undefined;
      if (attempt >= MAX_READ_ATTEMPTS) throw new Error("The manifest changed too fast to count");
    }
  }

  async change<T>(names: readonly string[], plan: ChangeFunction<T>): Promise<ChangeOutcome<T>> {
    const named = new Set(names);
    for (let attempt = 1; attempt <= MAX_CHANGE_ATTEMPTS; attempt++) {
      const { current, revision } = await this.#read(async (index, files) => {
        const current = new Map<string, StoredEntry>();
        for (const name of named) {
          const found = await this.#entryAt(index, files, name);
          if (found) current.set(name, found);
        }
        return { current, revision: index.revision };
      });
      const decided = await plan(current, revision);
      const change = _effective(named, current, decided.puts ?? [], decided.deletes ?? []);
      if (!change) return { result: decided.result, revision, changed: false };
      const committed = await this.#commit(named, current, change);
      if (committed !== undefined) {
        return { result: decided.result, revision: committed, changed: true };
      }
    }
    throw new Error(
      `Cannot change manifest entries ${
        [...named].slice(0, 3).map((name) => JSON.stringify(name)).join(", ")
      }: other changes to them came first ${MAX_CHANGE_ATTEMPTS} times`,
    );
  }

  async *watch(fromRevision: number, signal?: AbortSignal): AsyncGenerator<ManifestEvent> {
    let seen = fromRevision;
    while (!signal?.aborted) {
      const events = await this.#read((index): Promise<ManifestEvent[]> => {
        if (index.revision <= seen) return Promise.resolve([]);
        const first = index.recent[0];
        if (!first || first.revision > seen + 1) {
          return Promise.resolve([{ type: "reset", revision: index.revision }]);
        }
        return Promise.resolve(index.recent.filter((event) => event.revision > seen));
      });
      for (const event of events) {
        yield event;
        seen = event.revision;
      }
      if (events.length === 0) await sleep(WATCH_POLL_MS, signal);
    }
  }

  /** Runs `fn` with a current index and the files it points into, one call at a time. */
  #read<T>(fn: (index: ManifestIndex, files: ManifestFiles) => Promise<T>): Promise<T> {
    return this.#enqueue(async () => {
      for (let attempt = 1;; attempt++) {
        try {
          return await this.#withFiles(async (files) => fn(await this.#sync(files), files));
        } catch (error) {
          if (!(error instanceof JournalGapError) || attempt >= MAX_READ_ATTEMPTS) throw error;
          this.#index = undefined;
        }
      }
    });
  }

  /** Runs `fn` after every earlier read and change of this store. */
  #enqueue<T>(fn: () => Promise<T>): Promise<T> {
    const result = this.#queue.then(fn, fn);
    this.#queue = result.catch(() => {});
    return result;
  }

  /** Runs `fn` with the snapshot and journal opened (either may be absent), then closes them. */
  async #withFiles<T>(fn: (files: ManifestFiles) => Promise<T>): Promise<T> {
    // The journal first: a compaction renames its new snapshot in before
    // its new journal, so the snapshot opened next is at least as new as
    // the journal (older journal changes are skipped). The other order
    // could pair an old snapshot with a new, empty journal and lose every
    // change since the last compaction.
    const files: ManifestFiles = { snapshot: undefined, journal: undefined };
    try {
      files.journal = _openIfPresent(this.#journalPath);
      files.snapshot = _openIfPresent(this.#snapshotPath);
      return await fn(files);
    } finally {
      files.snapshot?.close();
      files.journal?.close();
    }
  }

  /** Brings the index up to the files just opened: re-indexes if they were replaced. */
  async #sync(files: ManifestFiles): Promise<ManifestIndex> {
    const snapshot = files.snapshot ? snapshotId(files.snapshot.statSync()) : "";
    const journalInfo = files.journal ? files.journal.statSync() : undefined;
    const journalId = journalInfo ? fileId(journalInfo) : "";
    let index = this.#index;
    if (
      !index || index.snapshotId !== snapshot ||
      (index.journalId !== journalId && index.journalEnd > 0) ||
      (journalInfo?.size ?? 0) < index.journalEnd
    ) {
      this.#index = undefined;
      this.#cache.clear();
      index = await ManifestIndex.load(files.snapshot);
    }
    index.journalId = journalId;
    if (files.journal && journalInfo!.size > index.journalEnd) {
      await index.readJournal(files.journal);
    }
    this.#index = index;
    return index;
  }

  async #entryAt(
    index: ManifestIndex,
    files: ManifestFiles,
    name: string,
  ): Promise<StoredEntry | undefined> {
    const slot = index.slot(name);
    if (!slot) return undefined;
    const cached = this.#cache.get(name);
    if (cached && cached.modRevision === slot.revision) {
      return { ...cached, revision: index.revision };
    }
    const entry = entryOf(name, await valueOf(slot, files), {
      storedContentId: this.storedContentIds,
    });
    const found = { entry, modRevision: slot.revision, revision: index.revision };
    this.#cache.delete(name);
    this.#cache.set(name, found);
    if (this.#cache.size > MAX_CACHED_ENTRIES) this.#cache.delete(this.#cache.keys().next().value!);
    return found;
  }

  /** Appends `change` under the lock if the named entries are as read; else undefined. */
  async #commit(
    named: ReadonlySet<string>,
    read: ReadonlyMap<string, StoredEntry>,
    change: _Change,
  ): Promise<number | undefined> {
    await Deno.mkdir(this.dir, { recursive: true });
    return await withFileLock(this.#lockPath, () =>
      this.#read(async (index, files) => {
        // Temp files of writers killed mid-write.
        await removeStaleTemps(this.dir);
        for (const name of named) {
          if (index.slot(name)?.revision !== read.get(name)?.modRevision) return undefined;
        }
        const generation = index.revision + 1;
        const text = layoutDocument(
          changeHeader(generation, change.deletes),
          change.puts.map(([name, json]) => entryLine(name, json)),
        );
        const journal = await Deno.open(this.#journalPath, {
          read: true,
          write: true,
          create: true,
        });
        try {
          const info = await journal.stat();
          // A writer killed mid-append left a torn change: cut it off.
          if (info.size > index.journalEnd) await journal.truncate(index.journalEnd);
          await journal.seek(index.journalEnd, Deno.SeekMode.Start);
          const bytes = _encoder.encode(text);
          for (let done = 0; done < bytes.length;) {
            done += await journal.write(bytes.subarray(done));
          }
          await journal.syncData();
          index.journalId = fileId(info);
          await index.readJournal(journal);
          if (index.revision !== generation) {
            throw new Error(`Manifest journal did not take change ${generation}`);
          }
          if (index.legacy || index.journalEnd > COMPACT_JOURNAL_SHARE * index.snapshotBytes) {
            // The change is durable: a compaction that fails (a full disk)
            // must not make it look failed. The next change tries again, and
            // a half-done compaction is one the readers already handle.
            await this.#compact(index, { snapshot: files.snapshot, journal }).catch(() => {
              this.#index = undefined;
            });
          }
        } finally {
          journal.close();
        }
        return generation;
      }));
  }

  /** Writes every entry into a new snapshot and starts an empty journal. */
  async #compact(index: ManifestIndex, files: ManifestFiles): Promise<void> {
    const { snapshotId, bytes, slots } = await writeSnapshot(this.#snapshotPath, index, files);
    // A new file, not a truncation: readers that opened the old one keep its bytes.
    await writeFileAtomic(this.#journalPath, "");
    // This writer knows where every entry now lies: no need to scan the new snapshot.
    this.#index = ManifestIndex.compacted(snapshotId, index.revision, bytes, slots);
    this.#cache.clear();
  }
}

/** The change a plan asks for, less puts equal to the current entry and deletes of absent names. */
function _effective(
  named: ReadonlySet<string>,
  current: ReadonlyMap<string, StoredEntry>,
  puts: readonly FileEntry[],
  deletes: readonly string[],
): _Change | undefined {
  const outside = [...puts.map((put) => put.name), ...deletes].find((name) => !named.has(name));
  if (outside !== undefined) {
    throw new TypeError(
      `A manifest change touched ${JSON.stringify(outside)}, which it did not name`,
    );
  }
  const put = new Map<string, string>();
  for (const entry of puts) {
    const json = JSON.stringify(parseFileEntry(entry));
    if (json !== JSON.stringify(current.get(entry.name)?.entry)) put.set(entry.name, json);
    else put.delete(entry.name);
  }
  const gone = [...new Set(deletes)].filter((name) =>
    current.has(name) && !puts.some((entry) => entry.name === name)
  );
  if (put.size === 0 && gone.length === 0) return undefined;
  return { puts: [...put], deletes: gone };
}

/**
 * Opens `path` for reading, or undefined when it does not exist. Opens and
 * fstats here are synchronous: every entry lookup makes two of each, and
 * handing each to an I/O thread and back cost more than the lookup itself
 * (four instances serving a batch of 10,000 small files spent 10.4 s of CPU
 * with async opens, 7.7 s with these).
 */
function _openIfPresent(path: string): Deno.FsFile | undefined {
  try {
    return Deno.openSync(path, { read: true });
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
}

/**
 * Brings `tally` up to `index`'s revision from the changes the index
 * remembers, reading only the entries they put; false when it does not
 * remember them all.
 */
async function _catchUp(
  tally: OwnerTally,
  index: ManifestIndex,
  files: ManifestFiles,
): Promise<boolean> {
  if (tally.revision === index.revision) return true;
  const since = index.recent.filter((change) => change.revision > tally.revision);
  if (since[0]?.revision !== tally.revision + 1) return false;
  const names = new Set(since.flatMap((change) => [...change.puts, ...change.deletes]));
  const present: string[] = [];
  for (const name of names) {
    if (index.slot(name)) present.push(name);
    else tally.delete(name);
  }
  const slots = present.map((name) => index.slot(name)!);
  const lines = await readSlots(slots, files);
  for (const [i, name] of present.entries()) {
    const { owner, size } = summaryOf(name, valueIn(slots[i]!, lines[i]!));
    tally.set(name, owner, size);
  }
  tally.revision = index.revision;
  return true;
}

/** Index of the first name after `after` in sorted `names`. */
function _firstAfter(names: readonly string[], after: string): number {
  let low = 0;
  let high = names.length;
  while (low < high) {
    const middle = (low + high) >> 1;
    if (names[middle]! <= after) low = middle + 1;
    else high = middle;
  }
  return low;
}
