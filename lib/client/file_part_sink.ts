/**
 * A part sink that writes into a file at the part's place (fetch writes into
 * its .fts-partial file, or in place). Given a hasher, it hashes the bytes
 * with XXH3-128 as they go into the file (on this thread, while an I/O
 * thread writes them: 20 ms per GiB with libxxhash), which is how the part
 * reader checks a part whose entry has an XXH3-128. Its SHA-256 is read back
 * from the file, in a worker thread, when asked for: for `--verify`, for a
 * part resumed mid-way or restarted, and when the XXH3-128 disagrees.
 * Disk errors become FetchErrors naming the part: no replica can fix them.
 */
import type { Xxh128 } from "../hash/xxh128.ts";
import { writeAll } from "../wire/frame.ts";
import { FetchError } from "./fetch_error.ts";
import type { PartSink } from "./part_reader.ts";

/** The FetchError for a write into the destination that failed; a full disk says what to do. */
export function destinationWriteError(cause: unknown, dir: string, index: number): FetchError {
  return new FetchError(
    (cause as { code?: unknown } | null)?.code === "ENOSPC"
      ? `The disk holding ${dir} is full; free some space or choose another DEST_DIR, then run the same command again to resume`
      : `Cannot write to the destination: ${cause instanceof Error ? cause.message : cause}`,
    [index],
    { cause },
  );
}

/** Writes all of `bytes` at the file's position, synchronously. */
export function writeAllSync(file: Deno.FsFile, bytes: Uint8Array): void {
  for (let done = 0; done < bytes.length;) done += file.writeSync(bytes.subarray(done));
}

export interface FilePartSinkOptions {
  file: Deno.FsFile;
  /** Where the part starts in the file. */
  base: number;
  /** The part's index, named in errors. */
  index: number;
  /** The directory the file is in, named when its disk is full. */
  dir: string;
  /**
   * A small part (a few pages): written synchronously, which costs less than
   * handing each write to an I/O thread and back (lstatOrUndefined in
   * base/fs_util.ts has the figures).
   */
  small?: boolean;
  /** Hashes the part as it lies in the file (SHA-256). */
  hash: () => Promise<{ digest: string; bytes: number }>;
  /** Where the file's position is now, relative to `base`, when known (a new file: 0). */
  at?: number;
  /** Hashes the bytes written from 0 on, in order (quickDigest()); reset by this sink. */
  quick?: Xxh128 | undefined;
}

export class FilePartSink implements PartSink {
  readonly #options: FilePartSinkOptions;
  /** Where the file's position is, within the part; undefined when unknown. */
  #at: number | undefined;

  /** The bytes `quick` has hashed, from 0 on; -1 when they were not all seen in order. */
  #hashed = 0;

  constructor(options: FilePartSinkOptions) {
    this.#options = options;
    this.#at = options.at;
    options.quick?.reset();
  }

  restart(_offset: number): void {
    // The bytes of a failed attempt are overwritten in place: the next write
    // seeks unless the file's position is already its offset (#at is
    // undefined after a write that failed). A seek per part was a tenth of
    // the system calls of a batch of small files.
  }

  async write(offset: number, bytes: Uint8Array): Promise<void> {
    const { file, base, index, dir } = this.#options;
    if (this.#at !== offset) {
      try {
        // lseek returns at once: the async form's round trip through Deno's
        // I/O threads cost 0.13 ms a part (1,280 parts of 4 KiB: 170 ms).
        file.seekSync(base + offset, Deno.SeekMode.Start);
      } catch (cause) {
        throw new FetchError(`Cannot seek in the destination`, [index], { cause });
      }
    }
    this.#at = undefined;
    const quick = this.#quickFor(offset);
    try {
      // A small part goes straight into the page cache; a large one is
      // handed to an I/O thread a chunk at a time, so that receiving goes on
      // meanwhile (and hashing: neither changes the bytes).
      if (this.#options.small) {
        writeAllSync(file, bytes);
        quick?.update(bytes);
      } else {
        const written = writeAll(file, bytes);
        quick?.update(bytes);
        await written;
      }
    } catch (cause) {
      this.#hashed = -1;
      throw destinationWriteError(cause, dir, index);
    }
    if (quick) this.#hashed += bytes.length;
    this.#at = offset + bytes.length;
  }

  /** The hasher to add bytes written at `offset` to, if they follow what it hashed. */
  #quickFor(offset: number): Xxh128 | undefined {
    const { quick } = this.#options;
    if (!quick) return undefined;
    if (offset === 0 && this.#hashed !== 0) {
      quick.reset();
      this.#hashed = 0;
    }
    if (offset === this.#hashed) return quick;
    this.#hashed = -1;
    return undefined;
  }

  quickDigest(): { digest: string; bytes: number } | undefined {
    const { quick } = this.#options;
    return quick && this.#hashed >= 0 ? { digest: quick.digest(), bytes: this.#hashed } : undefined;
  }

  async digest(): Promise<{ digest: string; bytes: number }> {
    const { hash, index } = this.#options;
    // Reading back may move the file's position.
    this.#at = undefined;
    try {
      return await hash();
    } catch (cause) {
      throw new FetchError(
        `Cannot read back part ${index} from the destination: ${
          cause instanceof Error ? cause.message : cause
        }`,
        [index],
        { cause },
      );
    }
  }
}
