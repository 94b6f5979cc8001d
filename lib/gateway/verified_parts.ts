/**
 * The parts one response sends, read ahead a few at a time and each checked
 * (its XXH3-128, else its SHA-256: PartReader) before any of its bytes leave
 * the gateway:
 *
 * 1. Up to `window` parts are being read at once (the part reader fails over
 *    between replicas and reports copies that fail the digest); each first
 *    takes its size from the gateway's PartBudget (the share of the client's
 *    address), so memory is bounded by the budget however many clients
 *    download at once.
 * 2. next() hands out the parts in order; the caller sends the bytes and
 *    calls sent(), which gives them back to the budget and lets the next part
 *    start. A client that reads slowly therefore slows the reads (backpressure).
 * 3. A part no replica can serve makes next() throw; close() stops the reads
 *    in flight and gives their bytes back, and those of a part handed out and
 *    never sent.
 * 4. Parts take their bytes from the budget one after another, in order (see
 *    #read()), so a response never holds a later part while an earlier one
 *    waits.
 */
import { MemoryPartSink } from "../client/memory_part_sink.ts";
import type { PartReader } from "../client/part_reader.ts";
import type { FileEntry } from "../state/manifest.ts";
import type { BudgetShare } from "./part_budget.ts";

/** Parts read ahead per response, by default: keeps the replicas busy while one part is sent. */
export const DEFAULT_PARTS_IN_FLIGHT = 2;

export interface VerifiedPart {
  index: number;
  /** The whole part, verified. */
  bytes: Uint8Array;
}

export class VerifiedParts {
  readonly #entry: FileEntry;
  readonly #reader: PartReader;
  readonly #budget: BudgetShare;
  readonly #window: number;
  readonly #last: number;
  #next: number;
  readonly #pending: Promise<VerifiedPart>[] = [];
  /** The part next() handed out and sent() has not given back: close() gives it back. */
  #out: VerifiedPart | undefined;
  /** Settles once the latest read started has its bytes from the budget (or gave up). */
  #acquired: Promise<void> = Promise.resolve();
  readonly #abort = new AbortController();
  #closed = false;

  /** Parts `first` to `last` (inclusive) of the entry. */
  constructor(
    entry: FileEntry,
    first: number,
    last: number,
    reader: PartReader,
    budget: BudgetShare,
    window: number = DEFAULT_PARTS_IN_FLIGHT,
  ) {
    this.#entry = entry;
    this.#reader = reader;
    this.#budget = budget;
    this.#window = Math.max(1, window);
    this.#next = first;
    this.#last = last;
  }

  /** The next part, verified; undefined after the last. Throws when no replica can serve it. */
  async next(): Promise<VerifiedPart | undefined> {
    this.#fill();
    const part = this.#pending.shift();
    if (part === undefined) return undefined;
    this.#out = await part;
    return this.#out;
  }

  /** The caller is done with this part's bytes: they go back to the budget. */
  sent(part: VerifiedPart): void {
    if (this.#out === part) this.#out = undefined;
    this.#budget.release(part.bytes.length);
    this.#fill();
  }

  /** Stops the reads in flight; the bytes of parts they finish go back to the budget. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#abort.abort(new DOMException("The response ended", "AbortError"));
    // A response that ended before sending the part it held (the client reset the
    // connection before the head went out, say) gives it back all the same.
    if (this.#out !== undefined) this.#budget.release(this.#out.bytes.length);
    this.#out = undefined;
    for (const pending of this.#pending.splice(0)) {
      pending.then((part) => this.#budget.release(part.bytes.length), () => {});
    }
  }

  #fill(): void {
    while (!this.#closed && this.#pending.length < this.#window && this.#next <= this.#last) {
      const read = this.#read(this.#next++);
      // Awaited later by next(); a failure meanwhile must not count as unhandled.
      read.catch(() => {});
      this.#pending.push(read);
    }
  }

  async #read(index: number): Promise<VerifiedPart> {
    const part = this.#entry.parts[index]!;
    const signal = this.#abort.signal;
    // Parts take their bytes from the budget in order. Were a later, smaller part (a file's
    // last) let in while an earlier one waits for its address's share, responses from one
    // address could each hold a last part that waits to be sent behind an earlier part that
    // waits for the share those last parts hold: every one of them stuck for good.
    const earlier = this.#acquired;
    let acquired!: () => void;
    this.#acquired = new Promise<void>((resolve) => acquired = resolve);
    try {
      await earlier;
      await this.#budget.acquire(part.size, signal);
    } finally {
      acquired();
    }
    try {
      const sink = new MemoryPartSink(part.size);
      await this.#reader.read(
        { fileName: this.#entry.name, index, ...part },
        sink,
        {},
      );
      signal.throwIfAborted();
      return { index, bytes: sink.bytes };
    } catch (error) {
      this.#budget.release(part.size);
      throw error;
    }
  }
}
