/**
 * A part sink that writes into a file at the part's place (fetch writes into
 * its .fts-partial file, or in place), checked by hashing what reached the
 * file: the digest is read back from the file, in a worker thread, so the
 * check covers the bytes on disk and the receiving thread only moves bytes.
 * Disk errors become FetchErrors naming the part: no replica can fix them.
 */
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
}

export class FilePartSink implements PartSink {
  readonly #options: FilePartSinkOptions;
  /** Where the file's position is, within the part; undefined when unknown. */
  #at: number | undefined;

  constructor(options: FilePartSinkOptions) {
    this.#options = options;
    this.#at = options.at;
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
    try {
      // A small part goes straight into the page cache; a large one is
      // handed to an I/O thread a chunk at a time, so that receiving goes on
      // meanwhile.
      if (this.#options.small) writeAllSync(file, bytes);
      else await writeAll(file, bytes);
    } catch (cause) {
      throw destinationWriteError(cause, dir, index);
    }
    this.#at = offset + bytes.length;
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
