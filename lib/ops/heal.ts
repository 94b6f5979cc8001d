/**
 * Self-healing for the cluster supervisor. An instance that stays down for
 * longer than `healAfterMs` has its parts copied elsewhere by a repair run in
 * this process (throttled, so clients keep most of the machine); an instance
 * that comes back makes another, which drops the surplus copies such a run
 * made, or copies what it lost meanwhile, so every part ends with exactly R.
 * Shorter outages cost no copying: until its time is up, a down instance's
 * copies still count. The supervisor also starts a run when an instance
 * quarantined a copy, when clients reported a listed copy missing (at most
 * once a minute: anyone may report), and once the cluster has been up for
 * healAfterMs (afterStart()). In etcd, every host's supervisor follows who
 * is down and up, and the one elected (etcd_heal.ts) acts on it.
 */
import {
  DEFAULT_REPAIR_RATE_BYTES_PER_SECOND,
  type RepairEvent,
  type RepairOptions,
  type RepairReport,
} from "./repair.ts";
import { formatDuration } from "../base/units.ts";

/** How long an instance may be down before its parts are re-replicated. */
export const DEFAULT_HEAL_AFTER_MS = 60_000;
/** Runs for copies clients report missing start at most this often. */
export const REPORTED_TRIGGER_MIN_MS = 60_000;
/** After a run that could not do everything it tried (a copy failed), try again this much later. */
export const HEAL_RETRY_MS = 30_000;
/**
 * A run asked for by instances going down, coming back or joining starts
 * once no other such request came for this long, so that those of one event
 * share one run: a host's instances going down together, or, in etcd, seen
 * down over 2-3 s (each renews its lease on its own every 2 s)...
 */
export const MEMBERSHIP_SETTLE_MS = 1_000;
/** ... but no later than this after the first request. */
export const MEMBERSHIP_SETTLE_MAX_MS = 5_000;
/** How long stopping waits for a run in progress to notice and wind down. */
export const STOP_WAIT_MS = 2_000;

export interface HealOptions {
  /** 0 turns healing off. */
  healAfterMs: number;
  /** Bytes per second copied while healing; 0 means no limit. */
  rateBytesPerSecond?: number;
  onEvent?: (event: HealEvent) => void;
  /**
   * Whether instances going down, coming back and joining start runs here
   * from the start (true, the default). In etcd every host's healer hears
   * every instance and one host, elected, acts on it (setLeading()); the
   * others keep count so that any can take over.
   */
  leading?: boolean;
}

export type HealEvent =
  | { type: "start"; reason: string }
  | { type: "repair"; event: RepairEvent }
  | { type: "done"; reason: string; report: RepairReport; elapsedMs: number }
  | { type: "error"; reason: string; message: string };

/** What healing is doing, for `fts status` (plain JSON: it crosses the control channel). */
export interface HealStatus {
  enabled: boolean;
  /**
   * In etcd: whether this host is the one that heals for instances going
   * down and coming back (false: another host is, and this one takes over if
   * that one stops). Absent on a single host, which always does.
   */
  leading?: boolean;
  /** In etcd, following: the holder of the election as etcd last said (absent: not known). */
  leader?: string;
  healAfterMs: number;
  rateBytesPerSecond: number;
  /**
   * Instances down now; `healAt` is when their parts get copied elsewhere
   * (null: due already, or healing off), and `copies` how far that got:
   * waiting for healAt, copying (due, no run over since), copied (a run
   * since it was due ended with every part at R copies), or incomplete (that
   * run failed, or left parts short of R or lost); `leader` when due and
   * another host heals (in etcd): this one does not know how that went.
   */
  down: {
    id: string;
    since: string;
    healAt: string | null;
    copies: "waiting" | "copying" | "copied" | "incomplete" | "leader";
  }[];
  running: null | {
    reason: string;
    startedAt: string;
    copied: number;
    bytesCopied: number;
    dropped: number;
    corrupt: number;
  };
  last: null | {
    reason: string;
    finishedAt: string;
    copied: number;
    bytesCopied: number;
    dropped: number;
    failedCopies: number;
    short: number;
    lost: number;
    error?: string;
  };
  nextRetryAt: string | null;
}

interface _Down {
  since: number;
  /** Set once the instance has been down for healAfterMs. */
  due: boolean;
  timer: ReturnType<typeof setTimeout> | undefined;
  /** How the last run that started once it was due ended (undefined: none yet). */
  healed: boolean | undefined;
}

/** Runs one repair of the cluster being healed. */
export type RepairRunner = (options: RepairOptions) => Promise<RepairReport>;

export class Healer {
  readonly #repair: RepairRunner;
  readonly healAfterMs: number;
  readonly rateBytesPerSecond: number;
  /** Undefined on a single host; in etcd, whether this host was elected to heal. */
  #leading: boolean | undefined;
  /** In etcd, following: who holds the election, as etcd last said. */
  #leader: string | undefined;
  readonly #onEvent: (event: HealEvent) => void;
  readonly #down = new Map<string, _Down>();
  readonly #abort = new AbortController();
  #running: HealStatus["running"] = null;
  #last: HealStatus["last"] = null;
  /** The next run's reason; `membership` while only members' comings and goings asked for it. */
  #pending: { reason: string; membership: boolean } | undefined;
  #retry: { timer: ReturnType<typeof setTimeout>; at: number } | undefined;
  /** A membership run waiting for the rest of its event, and since when (performance.now()). */
  #settling: ReturnType<typeof setTimeout> | undefined;
  #settlingSince = 0;
  #stopped = false;
  #startTimer: ReturnType<typeof setTimeout> | undefined;
  /** triggerLimited(): the run waiting for its turn, and when the last one was started. */
  #limited: ReturnType<typeof setTimeout> | undefined;
  #limitedAt = -Infinity;
  #loop: Promise<void> | undefined;

  /** Heals with `repair` (repairCluster of one data directory, or a cluster in etcd). */
  constructor(repair: RepairRunner, options: HealOptions) {
    if (!(options.healAfterMs >= 0)) {
      throw new RangeError(`healAfterMs must be 0 or more, got ${options.healAfterMs}`);
    }
    this.#repair = repair;
    this.healAfterMs = options.healAfterMs;
    this.rateBytesPerSecond = options.rateBytesPerSecond ?? DEFAULT_REPAIR_RATE_BYTES_PER_SECOND;
    this.#onEvent = options.onEvent ?? (() => {});
    this.#leading = options.leading;
  }

  get enabled(): boolean {
    return this.healAfterMs > 0;
  }

  instanceDown(id: string): void {
    if (this.#stopped || this.#down.has(id)) return;
    const entry: _Down = {
      since: Date.now(),
      due: false,
      timer: undefined,
      healed: undefined,
    };
    this.#down.set(id, entry);
    if (!this.enabled) return;
    entry.timer = setTimeout(() => {
      entry.due = true;
      entry.timer = undefined;
      this.#membershipTrigger(`instance ${id} down for ${formatDuration(this.healAfterMs)}`);
    }, this.healAfterMs);
  }

  instanceUp(id: string): void {
    const entry = this.#down.get(id);
    if (!entry) return;
    clearTimeout(entry.timer);
    this.#down.delete(id);
    // Its copies are back: if a run copied them elsewhere meanwhile, some are now surplus;
    // if not, some may still be missing (its store lost or wiped while it was down).
    this.#membershipTrigger(`instance ${id} back`);
  }

  /** A new instance joined (in etcd: a host): copies may now spread over more failure domains. */
  instanceJoined(id: string): void {
    this.#membershipTrigger(`instance ${id} joined`);
  }

  /**
   * In etcd: this host was elected to heal (true), or lost the election's
   * lease (false: runs asked for by members' comings and goings that have
   * not started yet are dropped, the new leader's to make). One elected
   * while instances are due runs at once: the host that healed may have
   * stopped before it did.
   */
  setLeading(leading: boolean): void {
    this.#leading = leading;
    this.#leader = undefined;
    if (leading && this.#dueIds().size > 0) {
      this.#membershipTrigger("this host heals now, and instances are down past --heal-after");
    }
  }

  /** In etcd, following: who holds the election now, as etcd says (for status). */
  setLeader(holder: string | undefined): void {
    if (this.#leading !== true) this.#leader = holder;
  }

  /** A run for instances going down, coming back or joining: only where healing is led. */
  #membershipTrigger(reason: string): void {
    if (this.enabled && this.#leading !== false) this.trigger(reason, { membership: true });
  }

  /** Instance `id` left the cluster for good (fts forget): no longer down, nothing to heal. */
  instanceForgotten(id: string): void {
    clearTimeout(this.#down.get(id)?.timer);
    this.#down.delete(id);
  }

  /**
   * A run once the cluster has been up for healAfterMs, for what the cluster
   * left when it last stopped (copies made while an instance was down that
   * is back now, parts short of R): what this healer's memory cannot know.
   */
  afterStart(): void {
    if (!this.enabled || this.#stopped || this.#startTimer) return;
    this.#startTimer = setTimeout(
      () => this.trigger(`cluster up for ${formatDuration(this.healAfterMs)}`),
      this.healAfterMs,
    );
  }

  /**
   * trigger(), at most once per REPORTED_TRIGGER_MIN_MS: for what a client
   * (anyone who can connect) reports, so reports cannot keep runs going.
   */
  triggerLimited(reason: string): void {
    if (!this.enabled || this.#stopped || this.#limited) return;
    const wait = this.#limitedAt + REPORTED_TRIGGER_MIN_MS - Date.now();
    this.#limited = setTimeout(() => {
      this.#limited = undefined;
      this.#limitedAt = Date.now();
      this.trigger(reason);
    }, Math.max(0, wait));
  }

  /**
   * Starts a repair run now, or right after the current one. `membership`:
   * asked for by instances going down, coming back or joining, which only
   * the leading host acts on (in etcd); such a run not started when this
   * host stops leading is dropped.
   */
  trigger(reason: string, options: { membership?: boolean } = {}): void {
    if (this.#stopped) return;
    const membership = options.membership ?? false;
    if (this.#pending) {
      // One run for both: it counts as this host's own if either does.
      this.#pending.membership &&= membership;
    } else {
      this.#pending = { reason, membership };
    }
    if (this.#loop) return;
    if (membership) {
      if (this.#settling === undefined) this.#settlingSince = performance.now();
      clearTimeout(this.#settling);
      const left = this.#settlingSince + MEMBERSHIP_SETTLE_MAX_MS - performance.now();
      this.#settling = setTimeout(() => {
        this.#settling = undefined;
        this.#startLoop();
      }, Math.max(0, Math.min(MEMBERSHIP_SETTLE_MS, left)));
      return;
    }
    this.#startLoop();
  }

  #startLoop(): void {
    clearTimeout(this.#settling);
    this.#settling = undefined;
    this.#loop ??= this.#runLoop().finally(() => (this.#loop = undefined));
  }

  async #runLoop(): Promise<void> {
    while (this.#pending !== undefined && !this.#stopped) {
      const { reason, membership } = this.#pending;
      this.#pending = undefined;
      if (membership && this.#leading === false) continue;
      await this.#runOnce(reason, membership);
    }
  }

  async #runOnce(reason: string, membership: boolean): Promise<void> {
    if (this.#retry) {
      clearTimeout(this.#retry.timer);
      this.#retry = undefined;
    }
    const started = performance.now();
    const running = {
      reason,
      startedAt: new Date().toISOString(),
      copied: 0,
      bytesCopied: 0,
      dropped: 0,
      corrupt: 0,
    };
    this.#running = running;
    this.#onEvent({ type: "start", reason });
    let retry = false;
    // Who is gone is decided once the run holds the repair lock (it may wait for it).
    let gone = this.#dueIds();
    /** Records, for the instances this run heals, whether it made all their copies. */
    const healed = (whole: boolean) => {
      for (const id of gone) {
        const entry = this.#down.get(id);
        if (entry) entry.healed = whole;
      }
    };
    try {
      const report = await this.#repair({
        goneIds: gone,
        goneIdsNow: () => (gone = this.#dueIds()),
        // One budget for the disk reads healing causes, whether copies or re-hashes.
        copyRateBytesPerSecond: this.rateBytesPerSecond,
        verifyRateBytesPerSecond: this.rateBytesPerSecond,
        signal: this.#abort.signal,
        onEvent: (event) => {
          if (event.type === "copy") {
            running.copied++;
            running.bytesCopied += event.bytes;
          } else if (event.type === "drop") {
            running.dropped++;
          } else if (event.type === "corrupt") {
            running.corrupt++;
          }
          this.#onEvent({ type: "repair", event });
        },
      });
      this.#last = {
        reason,
        finishedAt: new Date().toISOString(),
        copied: report.copied,
        bytesCopied: report.bytesCopied,
        dropped: report.dropped + report.droppedElsewhere,
        failedCopies: report.failedCopies,
        short: report.short.length,
        lost: report.lost.length,
      };
      retry = report.failedCopies > 0;
      healed(
        report.failedCopies === 0 && report.short.length === 0 && report.lost.length === 0 &&
          report.unchecked.length === 0,
      );
      this.#onEvent({ type: "done", reason, report, elapsedMs: performance.now() - started });
    } catch (error) {
      if (this.#stopped) return;
      const message = error instanceof Error ? error.message : String(error);
      this.#last = {
        reason,
        finishedAt: new Date().toISOString(),
        copied: running.copied,
        bytesCopied: running.bytesCopied,
        dropped: running.dropped,
        failedCopies: 0,
        short: 0,
        lost: 0,
        error: message,
      };
      retry = true;
      healed(false);
      this.#onEvent({ type: "error", reason, message });
    } finally {
      this.#running = null;
    }
    if (retry && !this.#stopped) {
      const at = Date.now() + HEAL_RETRY_MS;
      const timer = setTimeout(() => {
        this.#retry = undefined;
        this.trigger(`retry of: ${reason}`, { membership });
      }, HEAL_RETRY_MS);
      this.#retry = { timer, at };
    }
  }

  /**
   * Down instances whose time is up: their copies are made again. Those of
   * any other instance that does not answer still count: one down for less
   * than --heal-after, or down a moment ago and not known to be yet.
   */
  #dueIds(): Set<string> {
    return new Set([...this.#down].filter(([, entry]) => entry.due).map(([id]) => id));
  }

  /** Stops timers and any run in progress; waits for the run to wind down. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#startTimer);
    clearTimeout(this.#settling);
    clearTimeout(this.#limited);
    for (const entry of this.#down.values()) clearTimeout(entry.timer);
    if (this.#retry) clearTimeout(this.#retry.timer);
    this.#abort.abort(new DOMException("The cluster is stopping", "AbortError"));
    // A run waiting for another process's repair lock cannot be interrupted: do not wait for it.
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      this.#loop?.catch(() => {}),
      new Promise((resolve) => (timer = setTimeout(resolve, STOP_WAIT_MS))),
    ]);
    clearTimeout(timer);
  }

  status(): HealStatus {
    const following = this.#leading === false;
    return {
      enabled: this.enabled,
      ...(this.#leading !== undefined ? { leading: this.#leading } : {}),
      ...(this.#leader !== undefined ? { leader: this.#leader } : {}),
      healAfterMs: this.healAfterMs,
      rateBytesPerSecond: this.rateBytesPerSecond,
      down: [...this.#down].map(([id, entry]) => ({
        id,
        since: new Date(entry.since).toISOString(),
        healAt: this.enabled && !entry.due
          ? new Date(entry.since + this.healAfterMs).toISOString()
          : null,
        copies: !entry.due
          ? "waiting"
          : following
          ? "leader"
          : entry.healed === undefined
          ? "copying"
          : entry.healed
          ? "copied"
          : "incomplete",
      })),
      running: this.#running ? { ...this.#running } : null,
      last: this.#last ? { ...this.#last } : null,
      nextRetryAt: this.#retry ? new Date(this.#retry.at).toISOString() : null,
    };
  }
}
