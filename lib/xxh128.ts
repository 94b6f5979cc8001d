/**
 * XXH3-128 (xxHash 0.8; what `xxhsum -H2` prints): the fast digest fetch uses
 * to tell which parts a destination already holds intact. SHA-256 stays the
 * digest every part is known by and every byte received is verified with;
 * over bytes already on disk it cost 0.6 s of CPU per GiB here, which capped a
 * resume check at about 0.5 s per GiB on 2 cores (issue 5). XXH3-128 hashes
 * about 12 GB/s per core here, so reading the file becomes the cost.
 *
 * It is WebAssembly built from Debian's xxhash.h by lib/xxh128/build.sh (the
 * SSE2 code path on WebAssembly SIMD); tests compare it with `xxhsum -H2`.
 * Not a cryptographic hash: it finds damage, not forgery. `fts fetch
 * --verify` checks local bytes with SHA-256 instead.
 */
import { XXH128_WASM_BASE64 } from "./xxh128_wasm.ts";

interface _Exports {
  memory: WebAssembly.Memory;
  buffer(): number;
  bufferBytes(): number;
  reset(): void;
  update(length: number): void;
  digest(): number;
}

let _module: WebAssembly.Module | undefined;

/** Compiled on first use (about 20 KB of code); each hasher gets its own instance. */
function _compiled(): WebAssembly.Module {
  return _module ??= new WebAssembly.Module(Uint8Array.fromBase64(XXH128_WASM_BASE64));
}

/** An incremental XXH3-128. */
export class Xxh128 {
  readonly #exports: _Exports;
  /** The module's input buffer: bytes placed here are hashed by `update(n)`. */
  readonly #input: Uint8Array;

  constructor() {
    this.#exports = new WebAssembly.Instance(_compiled(), {}).exports as unknown as _Exports;
    // The module never grows its memory, so this view stays valid.
    this.#input = new Uint8Array(
      this.#exports.memory.buffer,
      this.#exports.buffer(),
      this.#exports.bufferBytes(),
    );
    this.#exports.reset();
  }

  /** Starts over, as new: an instance (and its memory) can serve many digests. */
  reset(): this {
    this.#exports.reset();
    return this;
  }

  /** Adds bytes (copied into the module's memory a buffer at a time). */
  update(bytes: Uint8Array): this {
    for (let at = 0; at < bytes.length; at += this.#input.length) {
      const chunk = bytes.subarray(at, at + this.#input.length);
      this.#input.set(chunk);
      this.#exports.update(chunk.length);
    }
    return this;
  }

  /**
   * Reads up to `length` bytes from the file's current position straight into
   * the module's memory and hashes them: no copy. Returns the bytes read,
   * fewer only at end of file.
   */
  updateFromFileSync(file: Deno.FsFile, length: number): number {
    let total = 0;
    while (total < length) {
      const n = file.readSync(
        this.#input.subarray(0, Math.min(this.#input.length, length - total)),
      );
      if (n === null || n === 0) break;
      this.#exports.update(n);
      total += n;
    }
    return total;
  }

  /** The digest of everything added, lowercase hex; the hash can go on after. */
  digest(): string {
    const at = this.#exports.digest();
    return new Uint8Array(this.#exports.memory.buffer, at, 16).toHex();
  }
}

/** XXH3-128 of bytes in memory, lowercase hex. */
export function xxh128Hex(bytes: Uint8Array): string {
  return new Xxh128().update(bytes).digest();
}
