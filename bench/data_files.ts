/**
 * Data files for the tests and the benchmark: written from a seed (the same
 * bytes for the same seed, streamed), hashed, and damaged in place.
 */
import { createHash } from "node:crypto";

/** Writes `size` bytes of seeded pseudo-random data (xorshift), streaming. */
export async function writeRandomFile(path: string, size: number, seed = 1): Promise<void> {
  const file = await Deno.open(path, { write: true, create: true, truncate: true });
  try {
    const chunk = new Uint8Array(1024 * 1024);
    const words = new Uint32Array(chunk.buffer);
    let x = (seed * 2654435761) >>> 0 || 1;
    let written = 0;
    while (written < size) {
      for (let i = 0; i < words.length; i++) {
        x ^= x << 13;
        x >>>= 0;
        x ^= x >>> 17;
        x ^= x << 5;
        x >>>= 0;
        words[i] = x;
      }
      const n = Math.min(chunk.length, size - written);
      let done = 0;
      while (done < n) done += await file.write(chunk.subarray(done, n));
      written += n;
    }
  } finally {
    file.close();
  }
}

export async function sha256File(path: string): Promise<string> {
  const hash = createHash("sha256");
  const file = await Deno.open(path, { read: true });
  try {
    const buffer = new Uint8Array(1024 * 1024);
    while (true) {
      const n = await file.read(buffer);
      if (n === null) break;
      hash.update(buffer.subarray(0, n));
    }
  } finally {
    file.close();
  }
  return hash.digest("hex");
}

/** Overwrites `length` bytes at `offset` with different bytes (each byte inverted). */
export async function damageFile(path: string, offset: number, length: number): Promise<void> {
  const file = await Deno.open(path, { read: true, write: true });
  try {
    const buffer = new Uint8Array(length);
    await file.seek(offset, Deno.SeekMode.Start);
    let got = 0;
    while (got < length) {
      const n = await file.read(buffer.subarray(got));
      if (n === null) break;
      got += n;
    }
    for (let i = 0; i < got; i++) buffer[i] = buffer[i]! ^ 0xff;
    await file.seek(offset, Deno.SeekMode.Start);
    let done = 0;
    while (done < got) done += await file.write(buffer.subarray(done, got));
  } finally {
    file.close();
  }
}
