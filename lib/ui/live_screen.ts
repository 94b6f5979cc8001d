/**
 * A full-screen view on a terminal: the alternate screen (so the shell's
 * screen comes back on exit), frames redrawn in place, and, when stdin is a
 * terminal, keys read raw so a command line can be edited at the bottom
 * while the view redraws above it. Ctrl-C arrives as a key in raw mode; it
 * quits like SIGINT would.
 */
import {
  CLEAR_BELOW,
  CLEAR_LINE,
  CURSOR_HOME,
  ENTER_ALT_SCREEN,
  isTerminal,
  LEAVE_ALT_SCREEN,
  terminalSize,
  writeAllSync,
} from "../base/terminal.ts";

const HIDE_CURSOR = "\x1b[?25l";
const SHOW_CURSOR = "\x1b[?25h";
/** The longest command line the prompt keeps. */
const MAX_INPUT_CHARS = 200;

const CTRL_C = 0x03;
const CTRL_D = 0x04;
const BACKSPACE = 0x08;
const CTRL_U = 0x15;
const ESCAPE = 0x1b;
const DELETE = 0x7f;

export interface LiveScreenOptions {
  /** Draws one frame for this size; `input` is the command line typed so far. */
  render: (size: { columns: number; rows: number }, input: string) => string[];
  /** Called with each command line on Enter; undefined: no command line ('q' quits). */
  onLine?: (line: string) => void;
  /** Ctrl-C, Ctrl-D on an empty line, or 'q' without a command line. */
  onQuit: () => void;
  /** Where the cursor goes: the frame's last-but-one line, after the input (the prompt). */
  cursorOnPrompt?: boolean;
}

function _write(text: string): void {
  writeAllSync(Deno.stdout, text);
}

export class LiveScreen {
  readonly #options: LiveScreenOptions;
  #input = "";
  #active = false;
  #raw = false;
  #reading: Promise<void> | undefined;
  /** 0: plain keys; 1: just after ESC; 2: inside an escape sequence. */
  #escape = 0;
  readonly #onResize = () => this.draw();

  constructor(options: LiveScreenOptions) {
    this.#options = options;
  }

  /** Whether a live screen can run here: stdout must be a terminal. */
  static available(): boolean {
    return isTerminal(Deno.stdout);
  }

  get input(): string {
    return this.#input;
  }

  start(): void {
    if (this.#active) return;
    this.#active = true;
    _write(ENTER_ALT_SCREEN + (this.#options.cursorOnPrompt ? "" : HIDE_CURSOR));
    if (isTerminal(Deno.stdin)) {
      try {
        Deno.stdin.setRaw(true);
        this.#raw = true;
      } catch { /* not a terminal after all: no keys, signals still work */ }
      if (this.#raw) this.#reading = this.#readKeys();
    }
    try {
      Deno.addSignalListener("SIGWINCH", this.#onResize);
    } catch { /* no SIGWINCH here */ }
    this.draw();
  }

  /** Redraws the whole frame in place (no clear first, so nothing flickers). */
  draw(): void {
    if (!this.#active) return;
    const size = terminalSize();
    const lines = this.#options.render(size, this.#input).slice(0, size.rows);
    let frame = CURSOR_HOME + lines.map((line) => line + CLEAR_LINE).join("\r\n") + CLEAR_BELOW;
    if (this.#options.cursorOnPrompt && lines.length >= 2) {
      // The prompt is the line before the help line: "> " + input.
      const row = lines.length - 1;
      frame += `\x1b[${row};${Math.min(size.columns, 3 + this.#input.length)}H`;
    }
    _write(frame);
  }

  /** Leaves the alternate screen and gives the terminal back as it was. */
  stop(): void {
    if (!this.#active) return;
    this.#active = false;
    try {
      Deno.removeSignalListener("SIGWINCH", this.#onResize);
    } catch { /* never added */ }
    if (this.#raw) {
      try {
        Deno.stdin.setRaw(false);
      } catch { /* stdin gone */ }
      this.#raw = false;
    }
    _write(SHOW_CURSOR + LEAVE_ALT_SCREEN);
  }

  async #readKeys(): Promise<void> {
    const buffer = new Uint8Array(256);
    while (this.#active) {
      let n: number | null;
      try {
        n = await Deno.stdin.read(buffer);
      } catch {
        return;
      }
      if (n === null) return;
      for (const byte of buffer.subarray(0, n)) this.#key(byte);
      this.draw();
    }
  }

  #key(byte: number): void {
    if (this.#escape === 1) {
      // ESC [ and ESC O start a sequence (arrow keys and the like); ESC x is Alt+x.
      this.#escape = byte === 0x5b || byte === 0x4f ? 2 : 0;
      return;
    }
    if (this.#escape === 2) {
      if (byte >= 0x40 && byte <= 0x7e) this.#escape = 0;
      return;
    }
    const onLine = this.#options.onLine;
    if (byte === CTRL_C || (byte === CTRL_D && this.#input === "")) return this.#options.onQuit();
    if (byte === ESCAPE) {
      this.#escape = 1;
      return;
    }
    if (!onLine) {
      if (byte === 0x71 || byte === 0x51) this.#options.onQuit(); // q, Q
      return;
    }
    if (byte === 0x0d || byte === 0x0a) {
      const line = this.#input.trim();
      this.#input = "";
      if (line !== "") onLine(line);
    } else if (byte === DELETE || byte === BACKSPACE) {
      this.#input = this.#input.slice(0, -1);
    } else if (byte === CTRL_U) {
      this.#input = "";
    } else if (byte >= 0x20 && byte < 0x7f && this.#input.length < MAX_INPUT_CHARS) {
      this.#input += String.fromCharCode(byte);
    }
  }
}
