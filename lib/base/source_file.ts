/**
 * The file an upload or a preload reads, held to what it was when reading
 * began. Each part's digest catches bytes that change while that part is
 * read, but not a part rewritten after it was read, one rewritten before it
 * was read, bytes appended, or a file that holds more than its size says
 * (/proc, /sys): all of those would publish a file that never existed on
 * disk. So the file's size, modification time and inode are taken first and
 * checked again before publishing, with one read past its end. (tar and
 * rsync say "file changed as we read it" for the same reasons.)
 */

/** The file is not what it was when reading began; nothing should be published. */
export class SourceChangedError extends Error {
  override name = "SourceChangedError";
}

/** A regular file as it was when reading began. */
export interface SourceStamp {
  path: string;
  size: number;
  mtimeMs: number | undefined;
  ino: number | null;
}

/** The stamp of the regular file at `path`; a message for anything else. */
export async function stampSource(path: string): Promise<SourceStamp> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(path);
  } catch (cause) {
    throw new Error(`Cannot read ${path}: ${(cause as Error).message}`, { cause });
  }
  if (!info.isFile) throw new Error(`${path} is not a regular file`);
  return { path, size: info.size, mtimeMs: info.mtime?.getTime(), ino: info.ino };
}

/** Throws SourceChangedError unless the file is still what `stamp` says, ending where it did. */
export async function checkSource(stamp: SourceStamp): Promise<void> {
  const { path } = stamp;
  const again = "; run it again once nothing writes it";
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true });
  } catch (cause) {
    throw new SourceChangedError(`${path} went away while it was being read${again}`, { cause });
  }
  try {
    const info = await file.stat();
    if (info.size !== stamp.size) {
      throw new SourceChangedError(
        `${path} changed size while it was being read (${stamp.size} bytes, now ${info.size})` +
          again,
      );
    }
    if (info.mtime?.getTime() !== stamp.mtimeMs || info.ino !== stamp.ino) {
      throw new SourceChangedError(`${path} was modified while it was being read${again}`);
    }
    await file.seek(stamp.size, Deno.SeekMode.Start);
    if ((await file.read(new Uint8Array(1))) !== null) {
      throw new SourceChangedError(
        `${path} holds more bytes than its size says (a /proc or /sys file?): copy it to a ` +
          `regular file and send that`,
      );
    }
  } finally {
    file.close();
  }
}
