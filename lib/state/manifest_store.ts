/**
 * The manifest store: the seam between the code that reads and changes file
 * entries and where they are kept. Callers see only this interface (the file
 * store, file_manifest_store.ts, is the first implementation; it is shaped so
 * that etcd's v3 API maps onto it directly):
 *
 * - the store has a revision (the manifest's `generation`) that grows by one
 *   with every change, and each entry has the revision that last changed it;
 * - `get()` reads one entry and `list()` one page of entries in name order,
 *   so no caller needs the whole manifest in memory at once; `summaries()`
 *   is a page of what a listing shows of each entry, read without checking
 *   the whole entry (an etcd range read projects its values the same way);
 * - `change()` runs a pure function over the entries it names and commits its
 *   puts and deletes only if none of those entries changed meanwhile (a compare
 *   on their revisions, as an etcd txn does), otherwise re-reads and runs it
 *   again, at most MAX_CHANGE_ATTEMPTS times;
 * - `watch()` reports changes after a revision.
 *
 * A `Locker` holds named locks shared by every process of a data directory:
 * the repair lock, and the parts lock that keeps part GC from deleting a part
 * while a change that references it checks its copies and commits.
 */
import type { FileEntry } from "./manifest.ts";

/** Entries in one page of `list()` unless the caller asks for another size. */
export const LIST_PAGE_ENTRIES = 1000;
/** Names one `getMany()` may ask for (etcd caps a transaction at 128 operations). */
export const MAX_NAMES_PER_READ = 64;
/** Times `change()` runs its function before giving up on conflicting changes. */
export const MAX_CHANGE_ATTEMPTS = 20;

/** The lock one repair or scrub of a data directory holds from start to end. */
export const REPAIR_LOCK = "repair";
/**
 * The lock held while part copies are checked and a change referencing them
 * commits, and while unreferenced copies are found and deleted (part_gc.ts):
 * the manifest never lists a copy deleted meanwhile. Every change that adds,
 * removes or renames an entry takes it, so that a walk under it (repair's
 * record of new copies) finds the names it then changes still there.
 */
export const PARTS_LOCK = "parts";

/** One entry as the store holds it. */
export interface StoredEntry {
  entry: FileEntry;
  /** The store revision that last put this entry. */
  modRevision: number;
  /** The store revision this read saw. */
  revision: number;
}

export interface ListOptions {
  /** Start after this name (the last name of the previous page). */
  after?: string;
  /** Entries at most; LIST_PAGE_ENTRIES by default. */
  limit?: number;
  /**
   * Read as the manifest was at this revision, where the store keeps history
   * (etcd does); a store that does not reads the newest, and a walk that sees
   * the revision move starts over.
   */
  atRevision?: number;
}

export interface ListPage {
  entries: StoredEntry[];
  /** The store revision this page was read at. */
  revision: number;
  /** Whether entries follow the last one of this page. */
  more: boolean;
}

/** What a listing shows of one entry (file.list's rows). */
export interface EntrySummary {
  name: string;
  size: number;
  /** How many parts the file has. */
  parts: number;
  owner: string;
  created: string;
}

export interface SummaryPage {
  summaries: EntrySummary[];
  /** The store revision this page was read at. */
  revision: number;
  /** Whether entries follow the last one of this page. */
  more: boolean;
}

/** What a change function decides: entries to put, names to delete, and a result. */
export interface ChangePlan<T> {
  puts?: FileEntry[];
  deletes?: string[];
  result: T;
}

export interface ChangeOutcome<T> {
  result: T;
  /** The revision the change committed at, or the one it read when it changed nothing. */
  revision: number;
  changed: boolean;
}

/**
 * A change function: given the named entries as they are now (absent names
 * are absent from the map) and the store revision, says what to change. It may
 * run more than once, so it must not change anything itself.
 */
export type ChangeFunction<T> = (
  current: ReadonlyMap<string, StoredEntry>,
  revision: number,
) => ChangePlan<T> | Promise<ChangePlan<T>>;

/** One committed change, or a reset: the changes since `from` are gone; list again. */
export type ManifestEvent =
  | { type: "change"; revision: number; puts: string[]; deletes: string[] }
  | { type: "reset"; revision: number };

export interface ManifestStore {
  /** The current store revision (0 for an empty, never changed manifest). */
  revision(): Promise<number>;
  get(name: string): Promise<StoredEntry | undefined>;
  /**
   * Several entries, in the order of `names` (undefined where absent), read
   * together: one pass over the store's files, or one etcd transaction per
   * MAX_NAMES_PER_READ names, instead of a read each.
   */
  getMany(names: readonly string[]): Promise<(StoredEntry | undefined)[]>;
  /** One page of entries in name order. */
  list(options?: ListOptions): Promise<ListPage>;
  /**
   * One page of entry summaries in name order, as `list()` pages: cheaper, as
   * no part is checked and no content id computed.
   */
  summaries(options?: ListOptions): Promise<SummaryPage>;
  /**
   * Entries a walk through every page should ask for per page, after a first
   * page of the default size: what this store serves best.
   */
  readonly walkPageEntries: number;
  /**
   * Optional: one page, as `list()` pages, of which `candidates` its entries
   * use, for a store that can tell without parsing every entry (see
   * `referencedAmong()` in part_gc.ts); `last` is the page's last name.
   */
  usedDigests?(candidates: ReadonlySet<string>, options?: ListOptions): Promise<UsedDigestsPage>;
  /**
   * Bytes of the files `owner` has published (file sizes, not copies),
   * leaving out the file named `except`: what a quota counts, exact as of
   * the newest revision when it is called. A tally kept in memory
   * (owner_tally.ts), brought up to date from the changes since: one walk of
   * every entry the first time, not one per publish.
   */
  publishedBytes(owner: string, except?: string): Promise<number>;
  /** Names the entries `plan` reads; it may put and delete only those. */
  change<T>(names: readonly string[], plan: ChangeFunction<T>): Promise<ChangeOutcome<T>>;
  /** Changes after `fromRevision`, as they come, until `signal` aborts. */
  watch(fromRevision: number, signal?: AbortSignal): AsyncIterable<ManifestEvent>;
}

export interface UsedDigestsPage {
  used: string[];
  last: string | undefined;
  revision: number;
  more: boolean;
}

export interface Locker {
  /** Runs `fn` holding the lock `name`, shared with every process of the data directory. */
  withLock<T>(name: string, fn: () => Promise<T>): Promise<T>;
}

/** Throws unless `names` is a count `getMany()` takes. */
export function checkManyNames(names: readonly string[]): void {
  if (names.length > MAX_NAMES_PER_READ) {
    throw new RangeError(
      `One read of the manifest names at most ${MAX_NAMES_PER_READ} entries, not ${names.length}`,
    );
  }
}

/** The entries a page of `list()` or `summaries()` holds at most, checked. */
export function pageLimit(options: ListOptions): number {
  const limit = options.limit ?? LIST_PAGE_ENTRIES;
  if (!Number.isSafeInteger(limit) || limit < 1) {
    throw new RangeError(`A page of the manifest holds at least 1 entry, not ${limit}`);
  }
  return limit;
}

/** Times a walk of the whole manifest starts over because it changed under the walk. */
export const MAX_WALK_ATTEMPTS = 10;

/**
 * The manifest changed between two pages of one walk: an entry renamed past
 * the walk's position would be missed, so the walk must start over.
 */
export class ManifestChangedError extends Error {
  constructor(from: number, to: number) {
    super(`The manifest changed while it was read (revision ${from}, then ${to})`);
    this.name = "ManifestChangedError";
  }
}

/**
 * Every entry of the store, page by page, all at one revision: throws
 * ManifestChangedError when a page comes from another revision than the
 * first. Callers that need every entry run their walk in `walkWhole()`.
 */
export function allEntries(
  store: ManifestStore,
  limit = LIST_PAGE_ENTRIES,
): AsyncGenerator<StoredEntry> {
  return _walk(
    async (options) => {
      const page = await store.list(options);
      return { items: page.entries, revision: page.revision, more: page.more };
    },
    (found) => found.entry.name,
    limit,
  );
}

/** Every entry's summary, with the revision it was read at, page by page as `allEntries()`. */
export function allSummaries(
  store: ManifestStore,
  limit = LIST_PAGE_ENTRIES,
): AsyncGenerator<{ summary: EntrySummary; revision: number }> {
  return _walk(
    async (options) => {
      const { summaries, revision, more } = await store.summaries(options);
      return { items: summaries.map((summary) => ({ summary, revision })), revision, more };
    },
    (item) => item.summary.name,
    limit,
  );
}

/** The items of every page `read` gives, in order; ManifestChangedError if the revision moves. */
async function* _walk<T>(
  read: (options: ListOptions) => Promise<{ items: T[]; revision: number; more: boolean }>,
  nameOf: (item: T) => string,
  limit: number,
): AsyncGenerator<T> {
  let after: string | undefined;
  let revision: number | undefined;
  while (true) {
    const pinned = revision === undefined ? {} : { atRevision: revision };
    const page = await read(after === undefined ? { limit } : { after, limit, ...pinned });
    revision ??= page.revision;
    if (page.revision !== revision) throw new ManifestChangedError(revision, page.revision);
    yield* page.items;
    if (!page.more || page.items.length === 0) return;
    after = nameOf(page.items.at(-1)!);
  }
}

/**
 * Runs `walk` (which reads the store with `allEntries()` and builds its
 * result from scratch) again while the manifest changes under it, at most
 * MAX_WALK_ATTEMPTS times; then the ManifestChangedError reaches the caller.
 */
export async function walkWhole<T>(walk: () => Promise<T>): Promise<T> {
  for (let attempt = 1;; attempt++) {
    try {
      return await walk();
    } catch (error) {
      if (!(error instanceof ManifestChangedError) || attempt >= MAX_WALK_ATTEMPTS) throw error;
    }
  }
}

/**
 * Bytes of the files each owner has published (file sizes, not copies),
 * leaving out the file named `except`, from one walk of every entry: what
 * `fts writers` shows (a publish asks ManifestStore.publishedBytes()).
 */
export function publishedBytesByOwner(
  store: ManifestStore,
  except?: string,
): Promise<Map<string, number>> {
  return walkWhole(async () => {
    const bytes = new Map<string, number>();
    for await (const { summary } of allSummaries(store)) {
      if (summary.name === except) continue;
      bytes.set(summary.owner, (bytes.get(summary.owner) ?? 0) + summary.size);
    }
    return bytes;
  });
}
