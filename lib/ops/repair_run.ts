/**
 * The state one repair shares between its steps: the cluster and options it
 * runs with, the census (which live instance stores which parts), the rate
 * limiters, the report being filled in and the progress told to the caller.
 * The census is taken here: an instance that does not answer part.list is
 * down, as far as this repair is concerned.
 */
import { type RepairTarget } from "./repair_target.ts";
import { type Peer, type StoredParts } from "../client/peer.ts";
import { TlsError } from "../wire/tls.ts";
import { RemoteProtocolError } from "../wire/errors.ts";
import { RateLimiter } from "../base/rate_limiter.ts";
import { connectForRepair, type RepairOptions } from "./repair_options.ts";
import {
  emptyRepairReport,
  type PartRef,
  type RepairEvent,
  type RepairProgress,
  type RepairReport,
} from "./repair_report.ts";

/** What the manifest says about one distinct part. */
export interface WantedPart {
  digest: string;
  size: number;
  refs: PartRef[];
  /** Instances the manifest lists for it, over every file that uses it. */
  listed: Set<string>;
}

export class RepairRun {
  readonly target: RepairTarget;
  readonly options: RepairOptions;
  readonly dryRun: boolean;
  readonly report: RepairReport;
  /** The census: what each live instance stores. */
  readonly stored = new Map<string, StoredParts>();
  /** Why instances the census could not ask failed, when it was TLS. */
  readonly tlsErrors: TlsError[] = [];
  readonly copyLimiter: RateLimiter | undefined;
  readonly verifyLimiter: RateLimiter | undefined;
  /** The totals of the progress, each known once its step starts. */
  readonly totals = { verifyTotal: 0, verifyBytesTotal: 0, copyTotal: 0, copyBytesTotal: 0 };
  /** Bytes of copies under way, on top of the report's bytesCopied. */
  bytesCopying = 0;
  #phase: RepairProgress["phase"] = "census";

  constructor(target: RepairTarget, options: RepairOptions) {
    this.target = target;
    this.options = options;
    this.dryRun = options.dryRun ?? false;
    this.copyLimiter = options.copyRateBytesPerSecond
      ? new RateLimiter(options.copyRateBytesPerSecond)
      : undefined;
    this.verifyLimiter = options.verifyRateBytesPerSecond
      ? new RateLimiter(options.verifyRateBytesPerSecond)
      : undefined;
    this.report = emptyRepairReport(this.dryRun);
  }

  /** R: copies every part should have. */
  get replicas(): number {
    return this.target.view.replicas;
  }

  emit(event: RepairEvent): void {
    this.options.onEvent?.(event);
  }

  /** Tells the caller how far the repair is; `phase` starts a step. */
  tick(phase = this.#phase): void {
    this.#phase = phase;
    if (!this.options.onProgress) return;
    const r = this.report;
    this.options.onProgress({
      phase,
      ...this.totals,
      verified: r.verified,
      bytesVerified: r.bytesVerified,
      corrupt: r.corrupt.length,
      copied: r.copied,
      bytesCopied: r.bytesCopied,
      bytesCopying: this.bytesCopying,
      failedCopies: r.failedCopies,
    });
  }

  address(id: string): string {
    return this.target.view.address(id);
  }

  async connect(id: string): Promise<Peer> {
    return await connectForRepair(this.address(id), this.options.tls);
  }

  /** Asks every instance which parts it stores; those that answer are live. */
  async census(): Promise<void> {
    const ids = this.target.view.ids;
    /** Instances that answer, but with an error for part.list (a broken part store). */
    const failing: { id: string; reason: string }[] = [];
    const gone = this.options.goneIds;
    await Promise.all(
      ids.filter((id) => !gone?.has(id)).map(async (id) => {
        let peer: Peer | undefined;
        try {
          peer = await this.connect(id);
          this.stored.set(id, await peer.listParts());
        } catch (error) {
          if (error instanceof TlsError) this.tlsErrors.push(error);
          if (error instanceof RemoteProtocolError) failing.push({ id, reason: error.message });
          // Does not answer (or not with its parts): down, as far as this repair is concerned.
        } finally {
          peer?.close();
        }
      }),
    );
    this.report.live = ids.filter((id) => this.stored.has(id));
    this.report.down = ids.filter((id) => !this.stored.has(id));
    this.emit({
      type: "census",
      live: this.report.live,
      down: this.report.down,
      ...(failing.length > 0 ? { failing } : {}),
    });
  }

  /** Listed copies on instances that are down but in their grace period. */
  graceHeld(part: WantedPart): string[] {
    return [...part.listed].filter((id) => !this.stored.has(id) && this.inGrace(id));
  }

  /** Whether instance `id`, if it does not answer, is expected back (see goneIds). */
  inGrace(id: string): boolean {
    const gone = this.options.goneIds;
    return gone !== undefined && !gone.has(id);
  }

  /** Reports a part without any good copy. */
  lost(part: WantedPart): void {
    const listed = [...part.listed].sort();
    this.report.lost.push({ digest: part.digest, refs: part.refs, listed });
    this.emit({ type: "lost", digest: part.digest, refs: part.refs, listed });
  }
}
