/**
 * What a repair tells its caller: an event for each thing it does or finds
 * (copies, drops, corrupt, short and lost parts), its progress as it goes,
 * and the report at the end. Parts are named for people by file and part
 * number (describePart).
 */

/** Where a part appears in the manifest. */
export interface PartRef {
  file: string;
  index: number;
}

export type RepairEvent =
  /** The repair lock is held by another run (a repair, scrub or healing run): this one waits. */
  | { type: "waiting" }
  | {
    type: "census";
    live: string[];
    /** Those that do not answer, and those in `failing`. */
    down: string[];
    /** Instances that answer but cannot list their parts, and what they said. */
    failing?: { id: string; reason: string }[];
  }
  | { type: "corrupt"; id: string; digest: string; refs: PartRef[] }
  | { type: "unchecked"; id: string; digest: string; refs: PartRef[]; reason: string }
  | {
    type: "copy";
    digest: string;
    refs: PartRef[];
    from: string;
    to: string;
    bytes: number;
    dryRun: boolean;
  }
  | {
    type: "copy-failed";
    digest: string;
    refs: PartRef[];
    from: string;
    to: string;
    reason: string;
  }
  | {
    type: "drop";
    digest: string;
    refs: PartRef[];
    id: string;
    dryRun: boolean;
    /** Out of the manifest, but on another host: deleted by a repair there. */
    left?: boolean;
  }
  | { type: "drop-failed"; id: string; digest: string; reason: string }
  | {
    type: "short";
    digest: string;
    refs: PartRef[];
    have: number;
    want: number;
    /** Whether it was the copies that could not be read (every source failed), not the room. */
    noSource?: boolean;
  }
  | { type: "lost"; digest: string; refs: PartRef[]; listed: string[] }
  | { type: "manifest"; parts: number };

/**
 * How far a repair is, for a progress display. The census comes first, then
 * the re-hash of the copies to check, then the copies to make; each total is
 * known once its step starts.
 */
export interface RepairProgress {
  phase: "census" | "verify" | "copy";
  /** Copies to re-hash, and their bytes. */
  verifyTotal: number;
  verifyBytesTotal: number;
  verified: number;
  bytesVerified: number;
  corrupt: number;
  /** Copies to make (R minus the good copies, over the parts short of R), and their bytes. */
  copyTotal: number;
  copyBytesTotal: number;
  copied: number;
  bytesCopied: number;
  /** Bytes of copies still under way, on top of bytesCopied. */
  bytesCopying: number;
  failedCopies: number;
}

export interface RepairReport {
  dryRun: boolean;
  live: string[];
  down: string[];
  /** Distinct parts (digests) the manifest references. */
  parts: number;
  /** Copies re-hashed by their instance. */
  verified: number;
  bytesVerified: number;
  corrupt: { id: string; digest: string; refs: PartRef[] }[];
  /** Copies their instance answered but could not re-hash: not counted as good. */
  unchecked: { id: string; digest: string; refs: PartRef[]; reason: string }[];
  copied: number;
  bytesCopied: number;
  failedCopies: number;
  dropped: number;
  /**
   * Surplus copies on other hosts' instances (a cluster in etcd) taken off
   * the manifest and announced to their hosts, which delete them.
   */
  droppedElsewhere: number;
  /** Surplus copies off the manifest that could not be deleted (a read-only store, say). */
  failedDrops: number;
  /** Manifest part entries whose replica list changed. */
  manifestParts: number;
  /** Parts left with fewer than R copies: not enough live instances took one. */
  short: { digest: string; refs: PartRef[]; have: number }[];
  /** Parts with no good copy on any live instance. */
  lost: { digest: string; refs: PartRef[]; listed: string[] }[];
  /** Parts no file uses, stored longer than unusedAfterMs: deleted (or, dry run, would be). */
  unused: { parts: number; copies: number; bytes: number };
  /**
   * Parts no file uses that stay (a copy touched within unusedAfterMs, or
   * unusedAfterMs 0): the space left by interrupted deletes and uploads never
   * published, counted over every live instance's copies.
   */
  unusedKept: { parts: number; copies: number; bytes: number; unusedAfterMs: number };
  /**
   * Copies on other hosts' instances of parts no file uses (a cluster in
   * etcd): announced to their hosts, which delete each one untouched for
   * unusedAfterMs (or, dry run, would be announced).
   */
  unusedElsewhere: { parts: number; copies: number; bytes: number };
}

/** How a part is named for people: `part 3 of "a.bin"`. */
export function describePart(digest: string, refs: readonly PartRef[]): string {
  const [first] = refs;
  if (!first) return `unreferenced part ${digest.slice(0, 12)}`;
  const more = refs.length > 1 ? ` (and ${refs.length - 1} more)` : "";
  return `part ${first.index} of ${JSON.stringify(first.file)}${more}`;
}

/** The report of a repair that has done nothing yet. */
export function emptyRepairReport(dryRun: boolean): RepairReport {
  return {
    dryRun,
    live: [],
    down: [],
    parts: 0,
    verified: 0,
    bytesVerified: 0,
    corrupt: [],
    unchecked: [],
    copied: 0,
    bytesCopied: 0,
    failedCopies: 0,
    dropped: 0,
    droppedElsewhere: 0,
    failedDrops: 0,
    manifestParts: 0,
    short: [],
    lost: [],
    unused: { parts: 0, copies: 0, bytes: 0 },
    unusedKept: { parts: 0, copies: 0, bytes: 0, unusedAfterMs: 0 },
    unusedElsewhere: { parts: 0, copies: 0, bytes: 0 },
  };
}
