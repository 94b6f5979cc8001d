/**
 * Another `fts` command run as a child process, its output drained into
 * memory (so it never blocks on a full pipe) and searchable while it runs.
 */
import { ftsCommand } from "../base/spawn.ts";

export class FtsChild {
  readonly args: string[];
  readonly process: Deno.ChildProcess;
  stdout = "";
  stderr = "";
  readonly status: Promise<Deno.CommandStatus>;
  #exited = false;

  constructor(args: string[], options: { env?: Record<string, string> } = {}) {
    this.args = args;
    const { program, prefix } = ftsCommand();
    this.process = new Deno.Command(program, {
      args: [...prefix, ...args],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      ...(options.env ? { env: options.env } : {}),
    }).spawn();
    const drain = async (stream: ReadableStream<Uint8Array>, key: "stdout" | "stderr") => {
      const decoder = new TextDecoder();
      for await (const chunk of stream) this[key] += decoder.decode(chunk, { stream: true });
    };
    const drained = Promise.all([
      drain(this.process.stdout, "stdout"),
      drain(this.process.stderr, "stderr"),
    ]).catch(() => {});
    this.status = this.process.status.then(async (status) => {
      this.#exited = true;
      await drained;
      return status;
    });
  }

  get pid(): number {
    return this.process.pid;
  }

  get exited(): boolean {
    return this.#exited;
  }

  /** Waits until the output matches, or throws with the output when the child exits or time runs out. */
  async waitFor(pattern: RegExp, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!pattern.test(this.stdout + this.stderr)) {
      if (this.#exited || Date.now() > deadline) {
        await Promise.race([this.status, new Promise((r) => setTimeout(r, 100))]);
        if (pattern.test(this.stdout + this.stderr)) return;
        throw new Error(
          `fts ${this.args[0]} ${
            this.#exited ? "exited" : `did not print ${pattern} within ${timeoutMs} ms`
          }: ${(this.stderr || this.stdout).trim().split("\n").slice(-3).join(" / ")}`,
        );
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  signal(signal: Deno.Signal): void {
    try {
      this.process.kill(signal);
    } catch { /* already gone */ }
  }

  /** Waits for the exit; throws with its last error line unless it exited 0. */
  async success(): Promise<string> {
    const status = await this.status;
    if (status.code !== 0) {
      const last = this.stderr.trim().split("\n").at(-1) ?? "";
      throw new Error(`fts ${this.args[0]} failed (exit ${status.code}): ${last}`);
    }
    return this.stdout;
  }
}
