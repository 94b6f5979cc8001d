/**
 * A long-running child process whose standard output and error are drained
 * into memory as they come, so the child never blocks on a full pipe, and can
 * be searched while it runs (a ready line, an error). `fts` children and the
 * other programs the tests run (etcd, a probe inside a test host) share it.
 */

/** How often waitFor() looks again when no output arrived meanwhile. */
const WAIT_POLL_MS = 200;

export class DrainedProcess {
  readonly child: Deno.ChildProcess;
  stdout = "";
  stderr = "";
  readonly #waiters = new Set<() => void>();
  readonly status: Promise<Deno.CommandStatus>;
  readonly #drained: Promise<unknown>;

  /** `child` must have been spawned with stdout and stderr piped. */
  constructor(child: Deno.ChildProcess) {
    this.child = child;
    const drain = async (stream: ReadableStream<Uint8Array>, key: "stdout" | "stderr") => {
      const decoder = new TextDecoder();
      for await (const chunk of stream) {
        this[key] += decoder.decode(chunk, { stream: true });
        for (const wake of this.#waiters) wake();
      }
    };
    this.#drained = Promise.all([
      drain(child.stdout, "stdout"),
      drain(child.stderr, "stderr"),
    ]).catch(() => {});
    this.status = child.status.then(async (status) => {
      await this.#drained;
      for (const wake of this.#waiters) wake();
      return status;
    });
  }

  get pid(): number {
    return this.child.pid;
  }

  /** Waits until stdout+stderr match `pattern`; throws with the output on timeout or exit. */
  async waitFor(pattern: RegExp, timeoutMs = 30_000): Promise<RegExpMatchArray> {
    const deadline = Date.now() + timeoutMs;
    let exited = false;
    this.status.then(() => (exited = true));
    while (true) {
      const match = (this.stdout + this.stderr).match(pattern);
      if (match) return match;
      if (exited) {
        throw new Error(`Process exited before ${pattern}:\n${this.stdout}\n${this.stderr}`);
      }
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new Error(`Timed out waiting for ${pattern}:\n${this.stdout}\n${this.stderr}`);
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, Math.min(left, WAIT_POLL_MS));
        function done() {
          clearTimeout(timer);
          resolve();
        }
        this.#waiters.add(done);
      });
    }
  }

  kill(signal: Deno.Signal = "SIGKILL"): void {
    try {
      this.child.kill(signal);
    } catch { /* exited */ }
  }

  async result(): Promise<{ code: number; stdout: string; stderr: string }> {
    const status = await this.status;
    return { code: status.code, stdout: this.stdout, stderr: this.stderr };
  }
}
