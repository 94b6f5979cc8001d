/**
 * The file store's index: for every entry name, the revision that last put it
 * and where its JSON lies (a line of the snapshot or of the journal), so that
 * a lookup reads and parses one line and nothing is held in memory but names
 * and offsets. Built by scanning the snapshot's lines (only names are parsed),
 * then kept current by reading only the journal bytes appended since.
 *
 * The snapshot's entries, written in name order, are kept in parallel arrays
 * searched by bisection rather than as one object and map entry each: at
 * 10,000 entries that is about a third of the memory, which every instance
 * holds. Entries changed since the snapshot are kept in a map beside them.
 *
 * A snapshot not in the line layout (hand-edited, or written by an older fts
 * as one line) is parsed whole and its entries are kept in memory until the
 * next writer rewrites it in the line layout.
 */
import {
  decodeLine,
  isClosingLine,
  parseChangeHeader,
  readAt,
  readSnapshotGeneration,
  scanLines,
  splitEntryLine,
} from "./manifest_layout.ts";
import { MANIFEST_FORMAT, MANIFEST_VERSION } from "./manifest.ts";
import type { ManifestEvent } from "./manifest_store.ts";

/** Changes an index remembers for `watch()`; one further behind gets a reset. */
export const MAX_REMEMBERED_CHANGES = 1000;

/** Where one entry's line lies, or its value for a snapshot not in the line layout. */
export interface EntrySlot {
  source: "snapshot" | "journal" | "memory";
  offset: number;
  length: number;
  /** Where the value starts within the line. */
  valueStart: number;
  revision: number;
  value?: unknown;
}

/** The journal skips generations the snapshot read with it does not have: read both again. */
export class JournalGapError extends Error {
  constructor(expected: number, found: number) {
    super(`Manifest journal has generation ${found} where ${expected} was expected`);
    this.name = "JournalGapError";
  }
}

/**
 * Whether `error` says the manifest's files are damaged (a snapshot or
 * journal that does not parse, or a journal that does not follow its
 * snapshot): the operator's to restore, not the client's to retry.
 */
export function isDamagedManifestError(error: unknown): boolean {
  if (error instanceof JournalGapError) return true;
  return error instanceof SyntaxError &&
    (error.message.startsWith("Manifest is malformed") ||
      error.message.startsWith("Manifest journal is malformed"));
}

/** Identity of an open file, to notice when a path names another file. */
export function fileId(info: Deno.FileInfo): string {
  return `${info.dev}:${info.ino}`;
}

/**
 * Identity of a snapshot's content: writers replace it whole, but a hand edit
 * may rewrite it in place.
 */
export function snapshotId(info: Deno.FileInfo): string {
  return `${fileId(info)}:${info.size}:${info.mtime?.getTime()}`;
}

export class ManifestIndex {
  /** fileId of the snapshot and journal this index was built from ("" if absent). */
  readonly snapshotId: string;
  journalId = "";
  readonly snapshotGeneration: number;
  readonly snapshotBytes: number;
  /** Whether the snapshot is not in the line layout (its entries are in memory). */
  readonly legacy: boolean;
  revision: number;
  /** Journal offset after the last whole change read. */
  journalEnd = 0;
  /** Bumped on every applied change, so callers can cache what they derive. */
  version = 0;
  /** The snapshot's entries in name order: names, line offsets, line lengths, value starts. */
  readonly #names: string[] = [];
  readonly #offsets: number[] = [];
  readonly #lengths: number[] = [];
  readonly #valueStarts: number[] = [];
  /** Entries put since the snapshot, and snapshot entries deleted since (null). */
  readonly #changed = new Map<string, EntrySlot | null>();
  #sorted: { version: number; names: readonly string[] } | undefined;
  readonly recent: Extract<ManifestEvent, { type: "change" }>[] = [];

  private constructor(snapshotId: string, generation: number, bytes: number, legacy: boolean) {
    this.snapshotId = snapshotId;
    this.snapshotGeneration = generation;
    this.revision = generation;
    this.snapshotBytes = bytes;
    this.legacy = legacy;
  }

  /** The index of a snapshot just written, from where its writer put each entry. */
  static compacted(
    snapshotId: string,
    generation: number,
    bytes: number,
    slots: Iterable<[string, EntrySlot]>,
  ): ManifestIndex {
    const index = new ManifestIndex(snapshotId, generation, bytes, false);
    for (const [name, slot] of slots) {
      index.#addSnapshotEntry(name, slot.offset, slot.length, slot.valueStart);
    }
    index.#settle();
    return index;
  }

  /** Indexes a snapshot (absent: an empty manifest at generation 0). */
  static async load(snapshot: Deno.FsFile | undefined): Promise<ManifestIndex> {
    if (!snapshot) return new ManifestIndex("", 0, 0, false);
    const info = await snapshot.stat();
    const generation = await readSnapshotGeneration(snapshot);
    if (generation === undefined) return await ManifestIndex.#loadWhole(snapshot, info);
    const index = new ManifestIndex(snapshotId(info), generation, info.size, false);
    let closed = false;
    let closedAt = 0;
    let first = true;
    await scanLines(snapshot, 0, (bytes, start, end, offset) => {
      if (first) return void (first = false);
      if (isClosingLine(bytes, start, end)) {
        closed = true;
        closedAt = offset + (end - start) + 1;
        return false;
      }
      const { name, valueStart, length } = splitEntryLine(bytes, start, end);
      index.#addSnapshotEntry(name, offset, length, valueStart);
    });
    // No closing line (a hand edit dropped the last newline, or the file is
    // cut short), or text after it: parse it whole, which tells them apart
    // (and refuses a file that is not JSON).
    if (!closed || closedAt < info.size) return await ManifestIndex.#loadWhole(snapshot, info);
    index.#settle();
    return index;
  }

  static async #loadWhole(snapshot: Deno.FsFile, info: Deno.FileInfo): Promise<ManifestIndex> {
    let value: Record<string, unknown> | null;
    try {
      value = JSON.parse(decodeLine(await readAt(snapshot, 0, info.size)));
    } catch (cause) {
      throw new SyntaxError("Manifest is malformed: not valid JSON", { cause });
    }
    const fail = (what: string): never => {
      throw new SyntaxError(`Manifest is malformed: ${what}`);
    };
    if (typeof value !== "object" || value === null || Array.isArray(value)) fail("not an object");
    const v = value as Record<string, unknown>;
    if (v.format !== MANIFEST_FORMAT) fail(`format is not ${MANIFEST_FORMAT}`);
    if (v.version !== MANIFEST_VERSION) {
      fail(`version ${v.version} is not supported (this fts reads ${MANIFEST_VERSION})`);
    }
    if (typeof v.generation !== "number") fail("no generation");
    const files = v.files;
    if (typeof files !== "object" || files === null) fail("files is not an object");
    const generation = v.generation as number;
    const index = new ManifestIndex(snapshotId(info), generation, info.size, true);
    for (const [name, entry] of Object.entries(files as Record<string, unknown>)) {
      index.#changed.set(name, {
        source: "memory",
        offset: 0,
        length: 0,
        valueStart: 0,
        revision: generation,
        value: entry,
      });
    }
    return index;
  }

  /** Where the entry `name` lies, or undefined if there is none. */
  slot(name: string): EntrySlot | undefined {
    const changed = this.#changed.get(name);
    if (changed !== undefined) return changed ?? undefined;
    const i = this.#find(name);
    if (i < 0) return undefined;
    return {
      source: "snapshot",
      offset: this.#offsets[i]!,
      length: this.#lengths[i]!,
      valueStart: this.#valueStarts[i]!,
      revision: this.snapshotGeneration,
    };
  }

  /** Every entry's name in name order (kept until the next change: do not modify). */
  sortedNames(): readonly string[] {
    if (this.#changed.size === 0) return this.#names;
    if (this.#sorted?.version === this.version) return this.#sorted.names;
    const added = [...this.#changed].flatMap(([name, slot]) =>
      slot !== null && this.#find(name) < 0 ? [name] : []
    ).sort();
    const names: string[] = [];
    let a = 0;
    for (const name of this.#names) {
      while (a < added.length && added[a]! < name) names.push(added[a++]!);
      if (this.#changed.get(name) !== null) names.push(name);
    }
    while (a < added.length) names.push(added[a++]!);
    this.#sorted = { version: this.version, names };
    return names;
  }

  /** Position of `name` among the snapshot's names, or -1. */
  #find(name: string): number {
    const names = this.#names;
    let low = 0;
    let high = names.length;
    while (low < high) {
      const middle = (low + high) >> 1;
      if (names[middle]! < name) low = middle + 1;
      else high = middle;
    }
    return low < names.length && names[low] === name ? low : -1;
  }

  #addSnapshotEntry(name: string, offset: number, length: number, valueStart: number): void {
    this.#names.push(name);
    this.#offsets.push(offset);
    this.#lengths.push(length);
    this.#valueStarts.push(valueStart);
  }

  /**
   * Checks the snapshot's names are in order with none twice; a hand-edited
   * snapshot that is not gets its entries kept in the map (a later line of a
   * name wins, as JSON.parse would have it).
   */
  #settle(): void {
    const names = this.#names;
    let ordered = true;
    for (let i = 1; i < names.length && ordered; i++) ordered = names[i - 1]! < names[i]!;
    if (!ordered) {
      for (const [i, name] of names.entries()) {
        this.#changed.set(name, {
          source: "snapshot",
          offset: this.#offsets[i]!,
          length: this.#lengths[i]!,
          valueStart: this.#valueStarts[i]!,
          revision: this.snapshotGeneration,
        });
      }
      for (const list of [names, this.#offsets, this.#lengths, this.#valueStarts]) list.length = 0;
    }
  }

  /**
   * Applies the whole changes appended to `journal` since the last read; a
   * torn or unfinished last change is left for the next read. Changes at or
   * below the snapshot's generation are already in it (a crash between
   * writing a snapshot and emptying the journal) and are skipped.
   */
  async readJournal(journal: Deno.FsFile): Promise<void> {
    let pending:
      | { generation: number; deletes: string[]; puts: [string, EntrySlot][] }
      | undefined;
    let end = this.journalEnd;
    let failure: unknown;
    await scanLines(journal, this.journalEnd, (bytes, start, stop, offset) => {
      try {
        if (!pending) {
          pending = { ...parseChangeHeader(decodeLine(bytes.subarray(start, stop))), puts: [] };
          return;
        }
        if (isClosingLine(bytes, start, stop)) {
          this.#apply(pending);
          pending = undefined;
          end = offset + 3;
          return;
        }
        const { name, valueStart, length } = splitEntryLine(bytes, start, stop);
        pending.puts.push([name, { source: "journal", offset, length, valueStart, revision: 0 }]);
      } catch (error) {
        failure = error;
        return false;
      }
    });
    this.journalEnd = end;
    if (failure) throw failure;
  }

  #apply(change: { generation: number; deletes: string[]; puts: [string, EntrySlot][] }): void {
    const { generation } = change;
    if (generation <= this.snapshotGeneration) return;
    if (generation !== this.revision + 1) throw new JournalGapError(this.revision + 1, generation);
    for (const name of change.deletes) this.#delete(name);
    for (const [name, slot] of change.puts) {
      this.#changed.set(name, { ...slot, revision: generation });
    }
    this.revision = generation;
    this.version++;
    this.recent.push({
      type: "change",
      revision: generation,
      puts: change.puts.map(([name]) => name),
      deletes: change.deletes,
    });
    if (this.recent.length > MAX_REMEMBERED_CHANGES) this.recent.shift();
  }

  #delete(name: string): void {
    if (this.#find(name) >= 0) this.#changed.set(name, null);
    else this.#changed.delete(name);
  }
}
