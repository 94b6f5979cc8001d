/**
 * Listening for the signals that ask a process to stop: Ctrl-C (SIGINT),
 * SIGTERM (what `kill` and a supervisor send) and SIGHUP (a closed terminal).
 * Every long-running command treats them the same, so they are added and
 * removed together here. And,
 * for a supervisor's children, noticing that their supervisor is gone.
 */
import { every } from "./deadline.ts";
import { processAlive } from "./fs_util.ts";

/** How often a child looks whether its supervisor still lives. */
export const PARENT_CHECK_INTERVAL_MS = 1_000;

/**
 * The signals that mean "stop now, cleanly": Ctrl-C, SIGTERM, and SIGHUP (the
 * terminal closed) unless this process was started with SIGHUP ignored, as
 * `nohup` starts it: a listener would undo what nohup asked for.
 */
export function stopSignals(): readonly Deno.Signal[] {
  return _HANGUP_IGNORED ? ["SIGINT", "SIGTERM"] : ["SIGINT", "SIGTERM", "SIGHUP"];
}

/**
 * Keeps SIGHUP ignored in a process started with it ignored (nohup): Deno
 * installs a handler of its own soon after it starts, which exits on it. Call
 * as the program starts (main.ts does).
 */
export function keepHangupIgnored(): void {
  if (_HANGUP_IGNORED) Deno.addSignalListener("SIGHUP", () => {});
}

/** Whether SIGHUP was ignored when this process started, read as this module loads. */
const _HANGUP_IGNORED = _hangupIgnored();

/** Whether SIGHUP is ignored now (Linux: SigIgn in /proc/self/status). */
function _hangupIgnored(): boolean {
  if (Deno.build.os !== "linux") return true;
  try {
    const mask = /^SigIgn:\s*([0-9a-f]+)$/m.exec(Deno.readTextFileSync("/proc/self/status"))?.[1];
    // SIGHUP is signal 1: the mask's lowest bit.
    return mask === undefined || (parseInt(mask.slice(-1), 16) & 1) === 1;
  } catch {
    return true;
  }
}

/**
 * Calls `handler` on each of stopSignals() until the returned function is
 * called, which removes the listeners (calling it again does nothing more).
 */
export function onStopSignal(handler: () => void): () => void {
  const signals = stopSignals();
  for (const signal of signals) Deno.addSignalListener(signal, handler);
  return () => {
    for (const signal of signals) Deno.removeSignalListener(signal, handler);
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
