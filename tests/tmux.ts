/**
 * A real terminal for tests: a tmux session on a private socket, keys sent
 * with send-keys, the screen read back with capture-pane (with or without
 * the escape codes), so a test checks what a person would see. Tests that use
 * it are ignored where tmux is missing: `ignore: missingTool("tmux")`.
 */
import { DENO, MAIN } from "./harness.ts";

function _quote(arg: string): string {
  return `'${arg.replaceAll("'", `'\\''`)}'`;
}

export class TmuxTerminal {
  readonly socket = `fts-test-${crypto.randomUUID().slice(0, 8)}`;
  readonly session = "t";

  async #tmux(...args: string[]): Promise<string> {
    const output = await new Deno.Command("tmux", {
      args: ["-L", this.socket, ...args],
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!output.success) {
      throw new Error(`tmux ${args[0]} failed: ${new TextDecoder().decode(output.stderr)}`);
    }
    return new TextDecoder().decode(output.stdout);
  }

  /**
   * Runs `fts ARGS...` in a new terminal of the given size. After it exits the
   * pane stays, showing "[exit N]", so the test can read the last screen.
   */
  async start(
    args: string[],
    options: { columns?: number; rows?: number; env?: Record<string, string> } = {},
  ): Promise<void> {
    const env = { TERM: "xterm-256color", ...options.env };
    const unset = "NO_COLOR" in env ? [] : ["-u", "NO_COLOR"];
    const command = [
      "env",
      ...unset,
      ...Object.entries(env).map(([k, v]) => `${k}=${v}`),
      DENO,
      "run",
      "-A",
      "--quiet",
      MAIN,
      ...args,
    ].map(_quote).join(" ");
    await this.#tmux(
      "new-session",
      "-d",
      "-s",
      this.session,
      "-x",
      String(options.columns ?? 100),
      "-y",
      String(options.rows ?? 30),
      `${command}; echo "[exit $?]"; sleep 600`,
    );
  }

  async sendKeys(...keys: string[]): Promise<void> {
    await this.#tmux("send-keys", "-t", this.session, ...keys);
  }

  /** Types text literally (no key names). */
  async type(text: string): Promise<void> {
    await this.#tmux("send-keys", "-t", this.session, "-l", text);
  }

  /** The screen as text; with `escapes`, with its colour codes. */
  async capture(escapes = false): Promise<string> {
    return await this.#tmux("capture-pane", "-p", ...(escapes ? ["-e"] : []), "-t", this.session);
  }

  /** Waits until the screen matches; throws with the screen on timeout. */
  async waitFor(pattern: RegExp, timeoutMs = 30_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    while (true) {
      const screen = await this.capture();
      if (pattern.test(screen)) return screen;
      if (Date.now() > deadline) {
        throw new Error(`Timed out waiting for ${pattern}; the screen shows:\n${screen}`);
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  async close(): Promise<void> {
    await this.#tmux("kill-server").catch(() => {});
  }
}
