/**
 * Listening for the signals that ask a process to stop: Ctrl-C (SIGINT) and
 * SIGTERM (what `kill` and a supervisor send). Every long-running command
 * treats both the same, so they are added and removed together here. And,
 * for a supervisor's children, noticing that their supervisor is gone.
 */
import { every } from "./deadline.ts";
import { processAlive } from "./fs_util.ts";

/** How often a child looks whether its supervisor still lives. */
export const PARENT_CHECK_INTERVAL_MS = 1_000;

/** The signals that mean "stop now, cleanly". */
export const STOP_SIGNALS: readonly Deno.Signal[] = ["SIGINT", "SIGTERM"];

/**
 * Calls `handler` on SIGINT or SIGTERM until the returned function is called,
 * which removes both listeners (calling it again does nothing more).
 */
export function onStopSignal(handler: () => void): () => void {
  for (const signal of STOP_SIGNALS) Deno.addSignalListener(signal, handler);
  return () => {
    for (const signal of STOP_SIGNALS) Deno.removeSignalListener(signal, handler);
  };
}

/**
 * Calls `handler` once process `parentPid` is gone (a supervisor killed
 * with SIGKILL sends no signal to its children) until the returned function
 * is called; with no pid, never.
 */
export function onParentGone(parentPid: number | undefined, handler: () => void): () => void {
  if (parentPid === undefined) return () => {};
  return every(PARENT_CHECK_INTERVAL_MS, () => {
    if (!processAlive(parentPid)) handler();
  });
}
