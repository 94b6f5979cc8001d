/**
 * Deadlines (call a function unless cancelled in time) without setTimeout.
 * Since Deno 2.8 a process's first setTimeout loads node:timers: measured
 * here, a bare TCP listener is 29.7 MB resident, 32.4 MB once it has called
 * setTimeout and 29.3 MB once it has called AbortSignal.timeout. Every
 * instance sets deadlines on its connections, and a host runs 50 instances
 * (each pays it). So the deadlines of a process share one chain of
 * AbortSignal.timeout signals, each due at the earliest pending deadline;
 * adding and cancelling cost O(1) (a deadline is set per chunk a connection
 * reads or writes); only a signal that fires scans the pending ones.
 *
 * Like a timer, a pending signal keeps the process alive until it fires; a
 * cancelled deadline's signal still fires (and finds nothing to do), so a
 * command ends with Deno.exit rather than by running out of work (main.ts).
 */

interface _Deadline {
  at: number;
  fire: () => void;
}

const _pending = new Map<number, _Deadline>();
let _nextId = 1;
/** When the next signal of the chain fires (Infinity: none is pending). */
let _scheduledAt = Infinity;

/** Calls `fire` after `ms` milliseconds unless the returned function is called first. */
export function deadline(ms: number, fire: () => void): () => void {
  const id = _nextId++;
  const at = performance.now() + Math.max(0, ms);
  _pending.set(id, { at, fire });
  // A pending signal that comes first (or at the same time) reschedules when it fires.
  if (at < _scheduledAt) _arm(at);
  return () => void _pending.delete(id);
}

/**
 * Settles as `promise` does, unless `ms` milliseconds pass first: then the
 * result rejects with the error `onExpire` returns (it may also close what
 * the promise waits on). `promise` is left to settle on its own.
 */
export async function raceDeadline<T>(
  promise: Promise<T>,
  ms: number,
  onExpire: () => Error,
): Promise<T> {
  let cancel = () => {};
  const timeout = new Promise<never>((_, reject) => {
    cancel = deadline(ms, () => reject(onExpire()));
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    cancel();
    timeout.catch(() => {});
  }
}

/** Calls `run` every `ms` milliseconds until the returned function is called. */
export function every(ms: number, run: () => void): () => void {
  let cancel = () => {};
  let stopped = false;
  const arm = () => {
    cancel = deadline(ms, () => {
      if (stopped) return;
      arm();
      run();
    });
  };
  arm();
  return () => {
    stopped = true;
    cancel();
  };
}

/** Pending deadlines, for tests. */
export function pendingDeadlines(): number {
  return _pending.size;
}

/** How many signals of the chain have fired, for tests. */
export function deadlineTicks(): number {
  return _ticks;
}

/**
 * The longest a timer can wait (2^31 - 1 ms, about 24.8 days): a longer one
 * fires at once, and a far deadline (`--timeout 30d`) would have the chain
 * fire and re-arm without end. A far deadline waits in steps of this instead.
 */
const _MAX_TIMER_MS = 2 ** 31 - 1;
let _ticks = 0;

function _arm(at: number): void {
  _scheduledAt = at;
  const ms = Math.min(_MAX_TIMER_MS, Math.max(0, Math.ceil(at - performance.now())));
  const signal = AbortSignal.timeout(ms);
  signal.addEventListener("abort", () => _tick(at), { once: true });
}

function _tick(scheduledFor: number): void {
  _ticks++;
  if (scheduledFor === _scheduledAt) _scheduledAt = Infinity;
  const now = performance.now();
  const due: _Deadline[] = [];
  let earliest = Infinity;
  for (const [id, entry] of _pending) {
    if (entry.at <= now) {
      _pending.delete(id);
      due.push(entry);
    } else {
      earliest = Math.min(earliest, entry.at);
    }
  }
  if (earliest < _scheduledAt) _arm(earliest);
  for (const entry of due) {
    try {
      entry.fire();
    } catch (error) {
      // A deadline's action must not break the others; report it as an uncaught error would be.
      queueMicrotask(() => {
        throw error;
      });
    }
  }
}
