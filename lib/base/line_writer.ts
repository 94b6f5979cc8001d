/**
 * Lines to standard output, written in blocks of about 64 KiB instead of one
 * write each: `fts ls` of 100,000 files spent 1.3 of its 4.7 s in 100,000
 * console.log calls. A reader that went away (`fts ls | head`) ends the
 * output quietly, as it would for any Unix tool.
 */
import { writeAllSync } from "./terminal.ts";
import { OutputError } from "./output_error.ts";

/** Characters gathered before a write. */
const _BLOCK_CHARS = 64 * 1024;

export class LineWriter {
  readonly #stream: { writeSync(p: Uint8Array): number };
  #pending: string[] = [];
  #chars = 0;
  #closed = false;

  constructor(stream: { writeSync(p: Uint8Array): number } = Deno.stdout) {
    this.#stream = stream;
  }

  /** True once the reader went away: what is written since is dropped. */
  get closed(): boolean {
    return this.#closed;
  }

  line(text: string): void {
    this.#pending.push(text);
    this.#chars += text.length + 1;
    if (this.#chars >= _BLOCK_CHARS) this.flush();
  }

  /** Writes what is gathered: at the end, and wherever the reader should see it now. */
  flush(): void {
    const text = this.#pending.length > 0 ? this.#pending.join("\n") + "\n" : "";
    this.#pending = [];
    this.#chars = 0;
    if (this.#closed || text === "") return;
    try {
      writeAllSync(this.#stream, text);
    } catch (error) {
      if (!(error instanceof Deno.errors.BrokenPipe)) throw new OutputError(error);
      this.#closed = true;
    }
  }
}
