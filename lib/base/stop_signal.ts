/**
 * Listening for the signals that ask a process to stop: Ctrl-C (SIGINT) and
 * SIGTERM (what `kill` and a supervisor send). Every long-running command
 * treats both the same, so they are added and removed together here.
 */

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
