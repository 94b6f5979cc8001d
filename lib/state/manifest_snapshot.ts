/**
 * Reading entries out of the file store's files and writing a new snapshot:
 * the line-level work of the file manifest store (file_manifest_store.ts).
 * Lines of neighbouring entries are read in runs, not one read each, so a page
 * of list() or a compaction costs a few reads per megabyte.
 */
import { syncDir, tempPathBeside } from "../base/fs_util.ts";
import { dirname } from "../base/paths.ts";
import { type FileEntry, OPERATOR_OWNER, parseFileEntry, type ParseOptions } from "./manifest.ts";
import type { EntrySummary } from "./manifest_store.ts";
import {
  CLOSING_LINE,
  decodeLine,
  entryLine,
  parseEntryValue,
  readAt,
  snapshotHeader,
} from "./manifest_layout.ts";
import { type EntrySlot, type ManifestIndex, snapshotId } from "./manifest_index.ts";

/** Snapshot bytes gathered before each write while compacting. */
const COMPACT_WRITE_BYTES = 1024 * 1024;
/** Entries read at once while compacting, so memory stays bounded at any size. */
const COMPACT_BATCH_ENTRIES = 1000;
/** Longest run of a file read at once for several entries. */
const MAX_RUN_BYTES = 64 * 1024;
/** Bytes between two entries' lines that one read still spans rather than seeking. */
const MAX_RUN_GAP_BYTES = 64 * 1024;

const _encoder = new TextEncoder();

/** The snapshot and journal a read works on, opened together (either may be absent). */
export interface ManifestFiles {
  snapshot?: Deno.FsFile | undefined;
  journal?: Deno.FsFile | undefined;
}

/** The entry on a line of the manifest, checked; `name` is the key it was under. */
export function entryOf(name: string, value: unknown, options: ParseOptions = {}): FileEntry {
  const entry = parseFileEntry(value, options);
  if (entry.name !== name) {
    throw new SyntaxError(`Manifest is malformed: entry "${name}" names itself "${entry.name}"`);
  }
  return entry;
}

/**
 * What a listing shows of the entry on a line: only the fields it shows are
 * checked (with parseFileEntry's defaults), and no content id is computed.
 */
export function summaryOf(name: string, value: unknown): EntrySummary {
  const v = value as Record<string, unknown> | null;
  const fail = (what: string): never => {
    throw new SyntaxError(`Manifest is malformed: entry "${name}" ${what}`);
  };
  if (typeof v !== "object" || v === null) return fail("is not an object");
  if (v.name !== name) fail(`names itself "${v.name}"`);
  const { size, parts } = v;
  if (typeof size !== "number" || !Number.isSafeInteger(size) || size < 0) fail("has a bad size");
  if (!Array.isArray(parts)) return fail("has parts that are not a list");
  return {
    name,
    size: size as number,
    parts: parts.length,
    owner: typeof v.owner === "string" ? v.owner : OPERATOR_OWNER,
    created: typeof v.created === "string" ? v.created : "",
  };
}

/** The value of an entry, read from its line. */
export async function valueOf(slot: EntrySlot, files: ManifestFiles): Promise<unknown> {
  if (slot.source === "memory") return slot.value;
  return valueIn(slot, await readAt(_fileOf(slot, files), slot.offset, slot.length));
}

const _lineDecoder = new TextDecoder();
/** A run of 64 hex digits, as a part's digest is written. */
const _HEX_RUN = /(?<![0-9a-f])[0-9a-f]{64}(?![0-9a-f])/g;
const _NONE: string[] = [];
/** Up to this many candidates, mayNameAny() looks for each: faster than matching every hex run. */
const _LOOK_FOR_EACH_MAX = 16;

/**
 * Whether JSON `text` may name one of `candidates`: it holds one as a run of
 * 64 hex digits, or a `\u` escape, which could spell one. False means it
 * names none, without parsing it.
 */
export function mayNameAny(text: string, candidates: ReadonlySet<string>): boolean {
  if (text.includes("\\u")) return true;
  // A few candidates are looked for as they are (a match inside a longer run only costs a parse);
  // many, by the text's hex runs.
  if (candidates.size <= _LOOK_FOR_EACH_MAX) {
    for (const candidate of candidates) if (text.includes(candidate)) return true;
    return false;
  }
  for (const [run] of text.matchAll(_HEX_RUN)) if (candidates.has(run)) return true;
  return false;
}

/**
 * Which of `candidates` the entry on `line` uses. The line is parsed only if
 * its text holds a candidate's digest, or a `\u` escape, which could spell
 * one: an entry that names none of them is read as text and dropped, with no
 * parsed object left to collect. Never less than parsing would find.
 */
export function digestsUsedIn(
  slot: EntrySlot,
  line: Uint8Array,
  candidates: ReadonlySet<string>,
): string[] {
  if (slot.source !== "memory" && !mayNameAny(_lineDecoder.decode(line), candidates)) return _NONE;
  const parts = (valueIn(slot, line) as { parts?: unknown } | null)?.parts;
  if (!Array.isArray(parts)) return _NONE;
  const used = new Set<string>();
  for (const part of parts) {
    const digest = (part as { digest?: unknown } | null)?.digest;
    if (typeof digest === "string" && candidates.has(digest)) used.add(digest);
  }
  return used.size === 0 ? _NONE : [...used];
}

/** The value of an entry from its line, already read. */
export function valueIn(slot: EntrySlot, line: Uint8Array): unknown {
  if (slot.source === "memory") return slot.value;
  try {
    return parseEntryValue(line, slot.valueStart);
  } catch (cause) {
    throw new SyntaxError(
      `Manifest is malformed: an entry at byte ${slot.offset} is not valid JSON`,
      {
        cause,
      },
    );
  }
}

/** Orders a file's slots before the other's (a number: localeCompare was slow in a sort). */
function _sourceRank(slot: EntrySlot): number {
  return slot.source === "snapshot" ? 0 : 1;
}

/**
 * The lines of `slots` (empty for entries held in memory), read in runs of
 * nearby lines rather than one read each.
 */
export async function readSlots(
  slots: readonly EntrySlot[],
  files: ManifestFiles,
): Promise<Uint8Array[]> {
  const lines: Uint8Array[] = slots.map(() => new Uint8Array(0));
  const order = slots.map((_, i) => i).filter((i) => slots[i]!.source !== "memory")
    .sort((a, b) =>
      _sourceRank(slots[a]!) - _sourceRank(slots[b]!) || slots[a]!.offset - slots[b]!.offset
    );
  for (let first = 0; first < order.length;) {
    const head = slots[order[first]!]!;
    let last = first;
    let end = head.offset + head.length;
    while (last + 1 < order.length) {
      const next = slots[order[last + 1]!]!;
      const nextEnd = Math.max(end, next.offset + next.length);
      if (
        next.source !== head.source || next.offset - end > MAX_RUN_GAP_BYTES ||
        nextEnd - head.offset > MAX_RUN_BYTES
      ) break;
      end = nextEnd;
      last++;
    }
    const run = await readAt(_fileOf(head, files), head.offset, end - head.offset);
    for (let i = first; i <= last; i++) {
      const slot = slots[order[i]!]!;
      lines[order[i]!] = run.subarray(
        slot.offset - head.offset,
        slot.offset - head.offset + slot.length,
      );
    }
    first = last + 1;
  }
  return lines;
}

function _fileOf(slot: EntrySlot, files: ManifestFiles): Deno.FsFile {
  const file = slot.source === "snapshot" ? files.snapshot : files.journal;
  if (!file) throw new Error(`Manifest ${slot.source} is gone while an entry in it was read`);
  return file;
}

/**
 * Writes every entry of `index` into a new snapshot at `path` (temp, fsync,
 * rename), in name order, reading their lines a batch at a time so that memory
 * stays bounded at any size; returns where each entry now lies.
 */
export async function writeSnapshot(
  path: string,
  index: ManifestIndex,
  files: ManifestFiles,
): Promise<{ snapshotId: string; bytes: number; slots: [string, EntrySlot][] }> {
  const temp = tempPathBeside(path);
  const out = await Deno.open(temp, { write: true, createNew: true });
  const compacted: [string, EntrySlot][] = [];
  let info: Deno.FileInfo;
  try {
    let pending: string[] = [];
    let pendingBytes = 0;
    const flush = async () => {
      const bytes = _encoder.encode(pending.join(""));
      for (let done = 0; done < bytes.length;) done += await out.write(bytes.subarray(done));
      pending = [];
      pendingBytes = 0;
    };
    let offset = 0;
    const write = async (text: string) => {
      pending.push(text);
      pendingBytes += text.length;
      offset += _encoder.encode(text).length;
      if (pendingBytes >= COMPACT_WRITE_BYTES) await flush();
    };
    const header = `${snapshotHeader(index.revision)}\n`;
    await write(header);
    // In name order, so that a page of list() is one run of the file.
    const names = index.sortedNames();
    for (let from = 0; from < names.length; from += COMPACT_BATCH_ENTRIES) {
      const batch = names.slice(from, from + COMPACT_BATCH_ENTRIES);
      const slots = batch.map((name) => index.slot(name)!);
      const lines = await readSlots(slots, files);
      for (const [i, name] of batch.entries()) {
        const slot = slots[i]!;
        const line = slot.source === "memory"
          ? entryLine(name, JSON.stringify(slot.value))
          : decodeLine(lines[i]!);
        if (from + i > 0) await write(",\n");
        const start = offset;
        await write(line);
        const valueStart = slot.source === "memory"
          ? _encoder.encode(JSON.stringify(name)).length + 1
          : slot.valueStart;
        compacted.push([name, {
          source: "snapshot",
          offset: start,
          length: offset - start,
          valueStart,
          revision: index.revision,
        }]);
      }
    }
    await write(`${names.length > 0 ? "\n" : ""}${CLOSING_LINE}\n`);
    await flush();
    await out.sync();
    info = await out.stat();
  } catch (error) {
    out.close();
    await Deno.remove(temp).catch(() => {});
    throw error;
  }
  out.close();
  await Deno.rename(temp, path);
  // The rename on disk before the caller replaces the journal: a file system
  // that reordered the two could keep an empty journal beside the old snapshot.
  await syncDir(dirname(path));
  return { snapshotId: snapshotId(info), bytes: info.size, slots: compacted };
}
