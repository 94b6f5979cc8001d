/**
 * Waiting a while, cut short when a signal aborts (a poll loop's pause between
 * looks). Built on deadline.ts rather than setTimeout, so that an instance
 * that polls (etcd locks, leases, watches) does not load node:timers.
 */
import { deadline } from "./deadline.ts";

/** Resolves after `ms` milliseconds, or at once when `signal` aborts; never rejects. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      cancel();
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const cancel = deadline(ms, done);
    signal?.addEventListener("abort", done, { once: true });
  });
}
