/**
 * The line layout of the file store's two files (FORMATS.md, "Manifest"):
 * each is JSON whose every file entry sits on a line of its own, so a reader
 * can index entries by scanning lines and parse only the one it needs.
 *
 *     {"format":"fts-manifest","version":1,"generation":7,"files":{     snapshot header
 *     "a.bin":{"name":"a.bin",...},                                     one entry a line
 *     "b.bin":{"name":"b.bin",...}
 *     }}
 *
 * A journal change is the same shape: a header with its generation and the
 * names it deletes, then the entries it puts:
 *
 *     {"generation":8,"deletes":["old.bin"],"puts":{
 *     "new.bin":{"name":"new.bin",...}
 *     }}
 */
import { MANIFEST_FORMAT, MANIFEST_VERSION } from "./manifest.ts";

/** The line that closes a snapshot or a change. */
export const CLOSING_LINE = "}}";
/** A first line this long or longer is no snapshot header (a one-line snapshot). */
const MAX_HEADER_BYTES = 200;
/**
 * Bytes read at a time while scanning a file's lines (a longer line grows the
 * buffer). Indexing a snapshot of 100,000 entries (34 MB) took 180-190 ms in
 * reads of 64 KiB, 153-168 ms in 256 KiB and 140-152 ms in 1 MiB: each
 * async read costs a trip to a thread and back. 1 MiB would be held, for a
 * while, by every instance that indexes.
 */
const SCAN_CHUNK_BYTES = 256 * 1024;

const _QUOTE = 0x22;
const _BACKSLASH = 0x5c;
const _COLON = 0x3a;
const _COMMA = 0x2c;
const _NEWLINE = 0x0a;
const _BRACE = 0x7d;
/** Bytes below this are control characters, which a JSON string must escape. */
const _SPACE = 0x20;
/**
 * ignoreBOM: a name may start with U+FEFF, and an entry line's key is decoded
 * on its own: by default the decoder would drop it, and the key would no
 * longer match the entry's name (every reader then took the manifest for damaged).
 */
const _decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

export function snapshotHeader(generation: number): string {
  return `{"format":${JSON.stringify(MANIFEST_FORMAT)},"version":${MANIFEST_VERSION},` +
    `"generation":${generation},"files":{`;
}

export function changeHeader(generation: number, deletes: readonly string[]): string {
  return `{"generation":${generation},"deletes":${JSON.stringify(deletes)},"puts":{`;
}

/** One entry's line, without the separating comma. */
export function entryLine(name: string, entryJson: string): string {
  return `${JSON.stringify(name)}:${entryJson}`;
}

/** A whole document (snapshot or change) from its header and entry lines. */
export function layoutDocument(header: string, lines: readonly string[]): string {
  return `${header}\n${lines.join(",\n")}${lines.length > 0 ? "\n" : ""}${CLOSING_LINE}\n`;
}

/** The generation in a snapshot header line, or undefined if the line is not one. */
export function parseSnapshotHeader(line: string): number | undefined {
  if (!line.startsWith('{"format"') || !line.endsWith('"files":{')) return undefined;
  let value: Record<string, unknown>;
  try {
    value = JSON.parse(`${line}}}`);
  } catch {
    return undefined;
  }
  if (value.format !== MANIFEST_FORMAT || value.version !== MANIFEST_VERSION) return undefined;
  const generation = value.generation;
  return typeof generation === "number" && Number.isSafeInteger(generation) && generation >= 0
    ? generation
    : undefined;
}

/** A journal change's header line; throws SyntaxError if it is not one. */
export function parseChangeHeader(line: string): { generation: number; deletes: string[] } {
  let value: Record<string, unknown> | undefined;
  try {
    value = line.endsWith('"puts":{') ? JSON.parse(`${line}}}`) : undefined;
  } catch {
    value = undefined;
  }
  const generation = value?.generation;
  const deletes = value?.deletes;
  if (
    typeof generation !== "number" || !Number.isSafeInteger(generation) ||
    !Array.isArray(deletes) || !deletes.every((name) => typeof name === "string")
  ) {
    throw new SyntaxError(`Manifest journal is malformed: bad change header ${line.slice(0, 80)}`);
  }
  return { generation, deletes };
}

/**
 * Splits the entry line `bytes[start, end)` into its name and where its value
 * starts (from the line's start); `length` is the line's length without a
 * separating comma. Throws SyntaxError.
 */
export function splitEntryLine(
  bytes: Uint8Array,
  start: number,
  end: number,
): { name: string; valueStart: number; length: number } {
  const _noName = () => new SyntaxError("Manifest is malformed: an entry line has no name");
  if (end <= start || bytes[start] !== _QUOTE) throw _noName();
  let close = start + 1;
  let plain = true;
  while (close < end && bytes[close] !== _QUOTE) {
    const byte = bytes[close]!;
    if (byte === _BACKSLASH || byte < _SPACE) plain = false;
    close += byte === _BACKSLASH ? 2 : 1;
  }
  if (close + 1 >= end || bytes[close + 1] !== _COLON) throw _noName();
  // Most names hold no escapes: decode them without a JSON parse.
  const name = plain
    ? _decoder.decode(bytes.subarray(start + 1, close))
    : JSON.parse(_decoder.decode(bytes.subarray(start, close + 1)));
  const length = bytes[end - 1] === _COMMA ? end - 1 - start : end - start;
  return { name, valueStart: close + 2 - start, length };
}

/** Parses the value of an entry line (without its comma). Throws SyntaxError. */
export function parseEntryValue(line: Uint8Array, valueStart: number): unknown {
  return JSON.parse(_decoder.decode(line.subarray(valueStart)));
}

/** Whether `bytes[start, end)` is the line that closes a snapshot or a change. */
export function isClosingLine(bytes: Uint8Array, start: number, end: number): boolean {
  return end - start === 2 && bytes[start] === _BRACE && bytes[start + 1] === _BRACE;
}

export function decodeLine(line: Uint8Array): string {
  return _decoder.decode(line);
}

/**
 * Calls `each` with every whole line of `file` from `start` on, as the range
 * `bytes[lineStart, lineEnd)` (without its newline; the buffer is reused, so
 * copy what must outlive the call), and the line's offset in the file; returns
 * the offset after the last whole line, so a torn last line is left out.
 * `each` returning false stops the scan there.
 */
export async function scanLines(
  file: Deno.FsFile,
  start: number,
  each: (bytes: Uint8Array, lineStart: number, lineEnd: number, offset: number) => boolean | void,
): Promise<number> {
  await file.seek(start, Deno.SeekMode.Start);
  // One buffer for the whole scan, no view per line: the unfinished line
  // moves to its front, and lines are passed as ranges of it.
  let buffer = new Uint8Array(SCAN_CHUNK_BYTES);
  let kept = 0;
  let keptOffset = start;
  while (true) {
    if (kept === buffer.length) {
      const larger = new Uint8Array(buffer.length * 2);
      larger.set(buffer);
      buffer = larger;
    }
    const n = await file.read(buffer.subarray(kept));
    if (n === null) return keptOffset;
    const filled = kept + n;
    let from = 0;
    while (true) {
      // Bytes past `filled` are left from earlier reads: a newline there is no line end.
      const newline = buffer.indexOf(_NEWLINE, from);
      if (newline < 0 || newline >= filled) break;
      if (each(buffer, from, newline, keptOffset + from) === false) return keptOffset + from;
      from = newline + 1;
    }
    buffer.copyWithin(0, from, filled);
    kept = filled - from;
    keptOffset += from;
  }
}

/** The generation in a snapshot file's header line; undefined if it is not in the line layout. */
export async function readSnapshotGeneration(file: Deno.FsFile): Promise<number | undefined> {
  let header: string | undefined;
  await scanLines(file, 0, (bytes, start, end) => {
    header = end - start < MAX_HEADER_BYTES ? decodeLine(bytes.subarray(start, end)) : "";
    return false;
  });
  return header === undefined ? undefined : parseSnapshotHeader(header);
}

/** Whether the last line of `file`, `size` bytes long, is the closing line. */
export async function endsWithClosingLine(file: Deno.FsFile, size: number): Promise<boolean> {
  // Compared as bytes: a torn tail need not be valid UTF-8.
  const tail = [_NEWLINE, _BRACE, _BRACE, _NEWLINE];
  if (size < tail.length) return false;
  const bytes = await readAt(file, size - tail.length, tail.length);
  return tail.every((byte, i) => bytes[i] === byte);
}

/**
 * Reads up to this many bytes synchronously: an async read hands the work to
 * a thread and back, which costs more than reading a page-cached entry.
 */
const SYNC_READ_MAX_BYTES = 64 * 1024;

/** Reads `length` bytes of `file` at `offset`. */
export async function readAt(
  file: Deno.FsFile,
  offset: number,
  length: number,
): Promise<Uint8Array> {
  const small = length <= SYNC_READ_MAX_BYTES;
  if (small) file.seekSync(offset, Deno.SeekMode.Start);
  else await file.seek(offset, Deno.SeekMode.Start);
  const bytes = new Uint8Array(length);
  let done = 0;
  while (done < length) {
    const n = small ? file.readSync(bytes.subarray(done)) : await file.read(bytes.subarray(done));
    if (n === null) {
      throw new RangeError(`Manifest file ended at ${offset + done}, before ${offset + length}`);
    }
    done += n;
  }
  return bytes;
}
