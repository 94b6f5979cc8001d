/**
 * Telling a hung instance from a live one. An instance whose process lives
 * but no longer answers (stopped, stuck on a dead disk, deadlocked) gives no
 * exit for the supervisor to see, yet clients get nothing from it and its
 * copies serve no one. The supervisor asks each instance that is up for its
 * stats every so often; one that lets MISSED_ANSWERS_DOWN checks in a row
 * time out is silent (and counts as down for healing) until it answers
 * again. Only a timeout counts: a refused connection is an exit, which the
 * supervisor sees anyway, and an instance that answers BUSY is alive.
 *
 * An instance that answers but cannot read its part store (its directory
 * gone, replaced, unreadable: the stats' storeError) serves no copy either:
 * it is failing, and counts as down for healing, until its store reads again.
 */
import { every } from "../base/deadline.ts";
import { probeInstances } from "./instances.ts";

/** Checks in a row an instance may leave unanswered before it is silent. */
export const MISSED_ANSWERS_DOWN = 3;
/** How long an instance may take to answer one check. */
export const ANSWER_TIMEOUT_MS = 2_000;
/** The longest and the shortest time between two checks of an instance. */
const MAX_CHECK_INTERVAL_MS = 5_000;
const MIN_CHECK_INTERVAL_MS = 1_000;

/**
 * Checks at a quarter of `healAfterMs`, within 1-5 s: a silent instance is
 * found well before its parts would be due.
 */
export function checkIntervalFor(healAfterMs: number): number {
  return Math.min(MAX_CHECK_INTERVAL_MS, Math.max(MIN_CHECK_INTERVAL_MS, healAfterMs / 4));
}

export interface AnswerWatchOptions {
  intervalMs: number;
  /** The instances up now (the others are not checked). */
  instances: () => { id: string; address: string }[];
  /** An instance went silent: MISSED_ANSWERS_DOWN checks timed out. */
  onSilent: (id: string) => void;
  /** A silent instance answered again (and can read its part store). */
  onAnswering: (id: string) => void;
  /** An instance answers, but says it cannot read its part store: `reason` is why. */
  onFailing?: (id: string, reason: string) => void;
  /** A failing instance can read its part store again. */
  onServing?: (id: string) => void;
  /**
   * An instance quarantined a copy since the check before (a client
   * reported it, or it failed a check): that part is a copy short.
   */
  onQuarantined?: (id: string) => void;
  /** A client reported a copy the instance does not hold since the check before. */
  onReportedMissing?: (id: string) => void;
}

export class AnswerWatch {
  readonly #options: AnswerWatchOptions;
  /** Checks in a row each instance left unanswered. */
  readonly #missed = new Map<string, number>();
  readonly #silent = new Set<string>();
  /** Instances that answer but cannot read their part store. */
  readonly #failing = new Set<string>();
  /** The count of quarantined copies each instance gave at its last check. */
  readonly #quarantined = new Map<string, number>();
  /** The count of reports of copies it does not hold each instance gave at its last check. */
  readonly #reportedMissing = new Map<string, number>();
  #checking = false;
  #stop: (() => void) | undefined;

  constructor(options: AnswerWatchOptions) {
    this.#options = options;
  }

  start(): void {
    this.#stop ??= every(this.#options.intervalMs, () => void this.check());
  }

  stop(): void {
    this.#stop?.();
    this.#stop = undefined;
  }

  /** The instance exited (or was started again): its count starts over. */
  forget(id: string): void {
    this.#missed.delete(id);
    this.#silent.delete(id);
    this.#failing.delete(id);
    this.#quarantined.delete(id);
    this.#reportedMissing.delete(id);
  }

  /** One round of checks; a round still waiting for answers is not doubled. */
  async check(): Promise<void> {
    if (this.#checking) return;
    this.#checking = true;
    try {
      // TLS as every connection of this process (FTS_TLS_CA), as healing's own.
      const probes = await probeInstances(this.#options.instances(), ANSWER_TIMEOUT_MS);
      if (this.#stop === undefined) return;
      for (const probe of probes) {
        if (!probe.up && probe.timedOut) {
          const missed = (this.#missed.get(probe.id) ?? 0) + 1;
          this.#missed.set(probe.id, missed);
          if (missed === MISSED_ANSWERS_DOWN) {
            this.#silent.add(probe.id);
            this.#options.onSilent(probe.id);
          }
        } else if (probe.up) {
          this.#missed.delete(probe.id);
          const wasSilent = this.#silent.delete(probe.id);
          const storeError = probe.stats?.storeError;
          if (typeof storeError === "string") {
            // Still down for healing when it was silent: only said once.
            if (!this.#failing.has(probe.id)) {
              this.#failing.add(probe.id);
              this.#options.onFailing?.(probe.id, storeError);
            }
          } else if (this.#failing.delete(probe.id)) {
            this.#options.onServing?.(probe.id);
          } else if (wasSilent) {
            this.#options.onAnswering(probe.id);
          }
          // From 0: a count starts with the instance, and a first check may come after one.
          if (_grew(this.#quarantined, probe.id, probe.stats?.quarantined)) {
            this.#options.onQuarantined?.(probe.id);
          }
          if (_grew(this.#reportedMissing, probe.id, probe.stats?.reportedMissing)) {
            this.#options.onReportedMissing?.(probe.id);
          }
        }
      }
    } finally {
      this.#checking = false;
    }
  }
}

/** Records `count` as `id`'s; whether it grew since the last one recorded (from 0). */
function _grew(counts: Map<string, number>, id: string, count: unknown): boolean {
  if (typeof count !== "number") return false;
  const before = counts.get(id) ?? 0;
  counts.set(id, count);
  return count > before;
}
