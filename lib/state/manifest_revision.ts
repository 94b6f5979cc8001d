/**
 * The file store's revision read without indexing any entry: the snapshot's
 * header line gives its generation and the journal's change headers the later
 * ones. An instance answers hello with the revision, so health probes and
 * `fts status` cost a header read and a journal scan (each cached until a file
 * changes), and an instance nobody reads entries from never builds the index
 * of every name (manifest_index.ts).
 *
 * It follows the index's rules (a torn last change is ignored, changes at or
 * below the snapshot's generation are skipped), and gives up (undefined, so
 * the caller builds the index, which reports the fault) on anything else: a
 * snapshot not in the line layout or not closed, a bad change header, a gap.
 */
import { fileId, snapshotId } from "./manifest_index.ts";
import {
  CLOSING_LINE,
  decodeLine,
  endsWithClosingLine,
  isClosingLine,
  parseChangeHeader,
  readSnapshotGeneration,
  scanLines,
} from "./manifest_layout.ts";
import type { ManifestFiles } from "./manifest_snapshot.ts";

/** The revision of one snapshot and journal, and how far the journal was read. */
export interface RevisionMark {
  snapshotId: string;
  snapshotGeneration: number;
  journalId: string;
  /** The journal's size when read, so an unchanged journal is not read again. */
  journalSize: number;
  /** Journal offset after the last whole change read. */
  journalEnd: number;
  revision: number;
}

/**
 * The revision of `files`, reading only what changed since `known` (a mark
 * of the same files read earlier), or undefined if only the index can tell.
 */
export async function readRevision(
  files: ManifestFiles,
  known?: RevisionMark,
): Promise<RevisionMark | undefined> {
  const snapshotInfo = files.snapshot ? files.snapshot.statSync() : undefined;
  const journalInfo = files.journal ? files.journal.statSync() : undefined;
  const snapshot = snapshotInfo ? snapshotId(snapshotInfo) : "";
  const journalId = journalInfo ? fileId(journalInfo) : "";
  const journalSize = journalInfo?.size ?? 0;
  let mark: RevisionMark | undefined = known;
  if (
    !mark || mark.snapshotId !== snapshot || mark.journalId !== journalId ||
    journalSize < mark.journalEnd
  ) {
    const generation = files.snapshot
      ? await _snapshotGeneration(files.snapshot, snapshotInfo!.size)
      : 0;
    if (generation === undefined) return undefined;
    mark = {
      snapshotId: snapshot,
      snapshotGeneration: generation,
      journalId,
      journalSize: 0,
      journalEnd: 0,
      revision: generation,
    };
  }
  if (journalSize === mark.journalSize) return mark;
  return files.journal ? await _readChanges(files.journal, { ...mark, journalSize }) : mark;
}

/** A line-layout snapshot's generation, or undefined for any other snapshot. */
async function _snapshotGeneration(file: Deno.FsFile, size: number): Promise<number | undefined> {
  // The index needs the closing line: without it the snapshot is torn.
  if (!(await endsWithClosingLine(file, size))) return undefined;
  return await readSnapshotGeneration(file);
}

/** `mark` advanced over the whole changes in `journal` after its journalEnd. */
async function _readChanges(
  journal: Deno.FsFile,
  mark: RevisionMark,
): Promise<RevisionMark | undefined> {
  let pending: number | undefined;
  let { revision, journalEnd } = mark;
  let fault = false;
  await scanLines(journal, mark.journalEnd, (bytes, start, end, offset) => {
    if (pending === undefined) {
      try {
        pending = parseChangeHeader(decodeLine(bytes.subarray(start, end))).generation;
      } catch {
        fault = true;
        return false;
      }
      return;
    }
    if (!isClosingLine(bytes, start, end)) return;
    if (pending > mark.snapshotGeneration) {
      if (pending !== revision + 1) {
        fault = true;
        return false;
      }
      revision = pending;
    }
    pending = undefined;
    journalEnd = offset + CLOSING_LINE.length + 1;
  });
  return fault ? undefined : { ...mark, revision, journalEnd };
}
