/**
 * What a repair may be asked to do (dry run, scrub, grace for instances
 * expected back, rates, deleting unused parts), with the limits and defaults
 * it runs under.
 */
import { Peer } from "../client/peer.ts";
import { type TlsClientOptions } from "../wire/tls.ts";
import { type RepairEvent, type RepairProgress } from "./repair_report.ts";

/** Copies that run at once (each from one instance to another). */
export const COPY_CONCURRENCY = 2;
/** Instances re-hashing at once; each hashes one part at a time. */
export const VERIFY_CONCURRENCY = 2;
/** Copy rate of repair and healing unless told otherwise: leaves clients most of the machine. */
export const DEFAULT_REPAIR_RATE_BYTES_PER_SECOND = 64 * 1024 * 1024;
/** Re-hash rate of the scrub unless told otherwise, over all instances. */
export const DEFAULT_VERIFY_RATE_BYTES_PER_SECOND = 256 * 1024 * 1024;
/** How often copies made so far are recorded in the manifest during a long repair. */
export const MANIFEST_FLUSH_INTERVAL_MS = 2_000;
/**
 * Parts no file uses (an upload that never published, a publish that lost a
 * race) are deleted once they have been stored this long: an upload slower
 * than that only has to send those parts again (the publish says which).
 */
export const DEFAULT_UNUSED_AFTER_MS = 24 * 60 * 60 * 1000;
/** The shortest --unused-after: well over an upload's refresh (upload.ts REFRESH_COPIES_AFTER_MS). */
export const MIN_UNUSED_AFTER_MS = 60 * 60 * 1000;
/** How long an instance may take to connect and answer hello before a repair counts it down. */
export const CENSUS_CONNECT_TIMEOUT_MS = 1_500;
/** part.list and part.verify answers may take a while on a busy instance. */
export const CENSUS_STALL_TIMEOUT_MS = 30_000;

/**
 * A repair's connection to an instance: connected and greeted within
 * CENSUS_CONNECT_TIMEOUT_MS, else the instance is down for the run (a hung
 * one takes connections but never answers: waiting out the answers' 30 s for
 * it made every repair, and healing, that much slower); answers then may take
 * up to CENSUS_STALL_TIMEOUT_MS.
 */
export async function connectForRepair(address: string, tls?: TlsClientOptions): Promise<Peer> {
  const peer = await Peer.connect(address, {
    connectTimeoutMs: CENSUS_CONNECT_TIMEOUT_MS,
    stallTimeoutMs: CENSUS_CONNECT_TIMEOUT_MS,
    ...(tls !== undefined ? { tls } : {}),
  });
  peer.reader.timeoutMs = CENSUS_STALL_TIMEOUT_MS;
  return peer;
}

export interface RepairOptions {
  /** Work out and report what would be done; copy, drop and record nothing. */
  dryRun?: boolean;
  /** Re-hash every copy on every live instance (the scrub), not only those of parts that need work. */
  verifyAll?: boolean;
  /**
   * Healing: the instances down for --heal-after, whose copies are made
   * again elsewhere. Any other instance that does not answer is taken as
   * coming back (down a moment only, or not known to be down yet: in etcd
   * its lease outlives it by seconds): the copies the manifest lists on it
   * still count, and stay listed. Absent (fts repair), every instance that
   * does not answer is down. A gone instance is not asked, even if something
   * answers on its address: the supervisor (or etcd) knows it is down, so
   * that is some other process (one started with another --data, say),
   * whose copies are not this instance's and may go with it.
   */
  goneIds?: ReadonlySet<string>;
  /**
   * The gone instances as they are once the repair lock is held, instead of
   * goneIds: a run may wait for the lock a while (another host's run), and
   * an instance gone when it was asked for may be back by then.
   */
  goneIdsNow?: () => ReadonlySet<string>;
  /** Bytes per second copied, over all copies; 0 or absent means no limit. */
  copyRateBytesPerSecond?: number;
  /** Bytes per second re-hashed, over all instances; 0 or absent means no limit. */
  verifyRateBytesPerSecond?: number;
  signal?: AbortSignal;
  onEvent?: (event: RepairEvent) => void;
  /** Called as the work advances (each copy re-hashed, each chunk copied); see RepairProgress. */
  onProgress?: (progress: RepairProgress) => void;
  /** TLS for every connection to an instance; absent means FTS_TLS_CA or plain TCP. */
  tls?: TlsClientOptions | undefined;
  /** Delete parts no file uses once stored this long (DEFAULT_UNUSED_AFTER_MS); 0 keeps them. */
  unusedAfterMs?: number;
  /**
   * The operator says the data directory is a new cluster: a missing manifest
   * is created empty rather than refused (manifest_guard.ts).
   */
  newCluster?: boolean;
}
