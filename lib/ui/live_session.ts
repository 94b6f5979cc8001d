/**
 * A live view running: the watch loop feeds snapshots and events, the screen
 * draws them, and the command line (in `fts cluster`) runs commands. While it
 * runs, what the command would have printed with console.log or
 * console.error becomes events in the view instead of scribbling over it;
 * stop() hands those lines back so they can be printed once the view is gone.
 */
import { type ClusterConfig } from "../state/config.ts";
import {
  type EventLevel,
  watchCluster,
  type WatchEvent,
  type WatchOptions,
  type WatchSnapshot,
} from "./cluster_watch.ts";
import { LiveScreen } from "./live_screen.ts";
import { renderLiveView } from "./live_view.ts";
import { colorEnabled } from "../base/terminal.ts";

/** Events kept for the view; older ones drop off. */
const MAX_EVENTS = 500;
/** Printed lines kept to print again after the view closes. */
const MAX_CAPTURED_LINES = 2_000;

export interface LiveSessionOptions extends Omit<WatchOptions, "signal"> {
  dir: string;
  config: ClusterConfig;
  title: string;
  /** A command line at the bottom: its help text and what runs a line. */
  commands?: { help: string; run: (line: string) => Promise<void> };
  footer?: string;
  onQuit: () => void;
}

const _TIME_PREFIX = /^\d\d:\d\d:\d\d /;

function _levelOf(line: string): EventLevel {
  if (/^error\b|\bfailed\b|\bLOST\b/i.test(line)) return "bad";
  if (/\bdown\b|\bkilled\b|\bdegraded\b/.test(line)) return "warn";
  if (/\bup\b|\bready\b|\bstarted\b|\bhealthy\b/.test(line)) return "good";
  return "info";
}

export class LiveSession {
  readonly #options: LiveSessionOptions;
  readonly #screen: LiveScreen;
  readonly #abort = new AbortController();
  readonly #events: WatchEvent[] = [];
  readonly #captured: string[] = [];
  readonly #color = colorEnabled(Deno.stdout);
  #snapshot: WatchSnapshot | undefined;
  #loop: Promise<void> | undefined;
  #restoreConsole: (() => void) | undefined;

  constructor(options: LiveSessionOptions) {
    this.#options = options;
    const commands = options.commands;
    this.#screen = new LiveScreen({
      render: (size, input) =>
        renderLiveView(
          {
            title: options.title,
            snapshot: this.#snapshot,
            events: this.#events,
            ...(commands ? { prompt: { input, help: commands.help } } : {}),
            ...(options.footer !== undefined ? { footer: options.footer } : {}),
            now: Date.now(),
          },
          size,
          this.#color,
        ),
      ...(commands ? { onLine: (line: string) => void this.#runCommand(line) } : {}),
      onQuit: options.onQuit,
      cursorOnPrompt: commands !== undefined,
    });
  }

  start(): void {
    this.#captureConsole();
    this.#screen.start();
    this.#loop = this.#watch();
  }

  /** Adds an event to the view. */
  note(text: string, level: EventLevel = _levelOf(text)): void {
    this.#events.push({ at: Date.now(), level, text });
    if (this.#events.length > MAX_EVENTS) this.#events.splice(0, this.#events.length - MAX_EVENTS);
    this.#screen.draw();
  }

  /** Ends the view; returns the lines printed while it ran, to print them now. */
  async stop(): Promise<string[]> {
    this.#abort.abort();
    this.#screen.stop();
    this.#restoreConsole?.();
    this.#restoreConsole = undefined;
    await this.#loop?.catch(() => {});
    return [...this.#captured];
  }

  async #watch(): Promise<void> {
    const { dir, config, ...watch } = this.#options;
    // A failed poll is said once (again only if what fails changes), and the
    // view polls on: the cause may pass (an instance restarted with the right
    // certificate), and a view that stopped would show a stale cluster for ever.
    let failing: string | undefined;
    const onError = (error: Error) => {
      if (error.message !== failing) {
        this.note(`cannot read the cluster's state: ${error.message}; trying again`, "bad");
      } else {
        this.#screen.draw();
      }
      failing = error.message;
    };
    try {
      for await (
        const { snapshot, events } of watchCluster(dir, config, {
          ...watch,
          onError,
          signal: this.#abort.signal,
        })
      ) {
        if (failing !== undefined) this.note("the cluster's state reads again", "good");
        failing = undefined;
        this.#snapshot = snapshot;
        for (const event of events) this.#events.push(event);
        this.#screen.draw();
      }
    } catch (error) {
      if (!this.#abort.signal.aborted) {
        this.note(`watch stopped: ${error instanceof Error ? error.message : error}`, "bad");
      }
    }
  }

  async #runCommand(line: string): Promise<void> {
    this.note(`> ${line}`, "info");
    try {
      await this.#options.commands?.run(line);
    } catch (error) {
      this.note(`error: ${error instanceof Error ? error.message : String(error)}`, "bad");
    }
  }

  #captureConsole(): void {
    const { log, error } = console;
    const capture = (...args: unknown[]) => {
      const text = args.map((a) => (typeof a === "string" ? a : Deno.inspect(a))).join(" ");
      for (const line of text.split("\n")) {
        this.#captured.push(line);
        if (this.#captured.length > MAX_CAPTURED_LINES) this.#captured.shift();
        this.note(line.replace(_TIME_PREFIX, ""));
      }
    };
    console.log = capture;
    console.error = capture;
    this.#restoreConsole = () => {
      console.log = log;
      console.error = error;
    };
  }
}
