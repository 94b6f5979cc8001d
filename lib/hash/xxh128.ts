/**
 * XXH3-128 (xxHash 0.8; what `xxhsum -H2` prints): the fast digest fetch uses
 * to tell which parts a destination already holds intact, and to check the
 * parts it receives (as rsync checks what it receives). SHA-256 stays the
 * digest every part is known by and decides whenever the two disagree; it
 * costs 0.6 s of CPU per GiB here, which capped a resume check at about 0.5 s
 * per GiB on 2 cores and was a third of a cold fetch's CPU.
 *
 * Two backends give the same digests (tests compare both with `xxhsum -H2`):
 * - the system's libxxhash (Debian's libxxhash0, which rsync depends on),
 *   called through Deno's FFI: about 50 GB/s per core here (its AVX2 code,
 *   chosen at run time), so a check costs little more than reading the file;
 *   it is used when it loads and passes a self-test (fts runs with every
 *   permission, FFI included);
 * - else WebAssembly built from Debian's xxhash.h by lib/hash/xxh128/build.sh (the
 *   SSE2 code path on WebAssembly SIMD): about 12 GB/s per core here. With it,
 *   checking a cached 1 GiB on one core took 170 ms against 115 ms with the
 *   library (whose reads alone took 92 ms).
 *
 * Not a cryptographic hash: it finds damage, not forgery. `fts fetch
 * --verify` checks local and received bytes with SHA-256 instead.
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

/** Which implementation computes the digests. */
export type Xxh128Backend = "native" | "wasm";

const _NATIVE_SYMBOLS = {
  XXH3_createState: { parameters: [], result: "pointer" },
  XXH3_freeState: { parameters: ["pointer"], result: "i32" },
  XXH3_128bits_reset: { parameters: ["pointer"], result: "i32" },
  XXH3_128bits_update: { parameters: ["pointer", "buffer", "usize"], result: "i32" },
  // The same, on the widest vector unit the CPU has (AVX2, AVX-512), chosen at
  // run time; the plain one keeps to the build's baseline (SSE2 on x86-64).
  // Here 20 ms per GiB against 55 (libxxhash 0.8's x86 builds export it).
  XXH3_128bits_update_dispatch: {
    parameters: ["pointer", "buffer", "usize"],
    result: "i32",
    optional: true,
  },
  // XXH128_hash_t: { low64, high64 }, returned by value.
  XXH3_128bits_digest: { parameters: ["pointer"], result: { struct: ["u64", "u64"] } },
} as const;

type _Native = Deno.DynamicLibrary<typeof _NATIVE_SYMBOLS>["symbols"];

/** The library's soname on each system it is looked for on. */
const _NATIVE_LIBRARY: Partial<Record<typeof Deno.build.os, string>> = {
  linux: "libxxhash.so.0",
  darwin: "libxxhash.0.dylib",
};

let _native: _Native | null | undefined;
/** Which update function the native backend calls (see _NATIVE_SYMBOLS). */
let _nativeUpdate: "dispatch" | "baseline" | undefined;

/** The system's libxxhash, once loaded and checked; null when it cannot be used. */
function _nativeLibrary(): _Native | null {
  if (_native !== undefined) return _native;
  _native = null;
  const name = _NATIVE_LIBRARY[Deno.build.os];
  if (!name) return null;
  try {
    const library = Deno.dlopen(name, _NATIVE_SYMBOLS).symbols;
    // A library that answers wrongly (another ABI, another version) is not used.
    const probe = new _NativeXxh128(library);
    const empty = probe.digest();
    const abc = probe.reset().update(new TextEncoder().encode("abc")).digest();
    // Long enough for the vector code (and for XXH3 of xxHash before 0.8, whose
    // digests of long inputs differ); the dispatching update must agree too.
    const long = new Uint8Array(4096).map((_, i) => (i * 2654435761) >>> 24);
    const baseline = probe.reset().update(long).digest();
    probe.free();
    if (
      empty !== "99aa06d3014798d86001c324468d497f" || abc !== _ABC_DIGEST ||
      baseline !== _LONG_DIGEST
    ) {
      return null;
    }
    _native = library;
    _nativeUpdate = "baseline";
    const dispatch = library.XXH3_128bits_update_dispatch;
    if (dispatch) {
      const faster: _Native = { ...library, XXH3_128bits_update: dispatch };
      const check = new _NativeXxh128(faster);
      if (check.update(long).digest() === baseline) {
        _native = faster;
        _nativeUpdate = "dispatch";
      }
      check.free();
    }
  } catch {
    // Not installed, or no permission to load it: the WebAssembly build serves.
  }
  return _native;
}

/** XXH3-128 of "abc" (xxhsum -H2). */
const _ABC_DIGEST = "06b05ab6733a618578af5f94892f3950";
/** XXH3-128 of the self-test's 4096 bytes, byte i = (i * 2654435761 mod 2^32) >> 24 (xxhsum -H2). */
const _LONG_DIGEST = "3203f3b99ad3538d9bf67f8deff876ae";

/** The backend new hashers use: the system's libxxhash when it can be used, else WebAssembly. */
export function xxh128Backend(): Xxh128Backend {
  return _nativeLibrary() ? "native" : "wasm";
}

/**
 * Which update the native backend calls: the one that picks the CPU's widest
 * vector unit at run time, or the build's baseline; undefined without it.
 */
export function xxh128NativeUpdate(): "dispatch" | "baseline" | undefined {
  return _nativeLibrary() ? _nativeUpdate : undefined;
}

/** Bytes read from a file at a time by the native backend (measured faster than 1 MiB). */
const _NATIVE_READ_BYTES = 256 * 1024;
let _nativeReadBuffer: Uint8Array | undefined;

const _nativeStates = new FinalizationRegistry<{ library: _Native; state: Deno.PointerValue }>(
  ({ library, state }) => void library.XXH3_freeState(state),
);

class _NativeXxh128 {
  readonly #library: _Native;
  #state: Deno.PointerValue;

  constructor(library: _Native) {
    this.#library = library;
    this.#state = library.XXH3_createState();
    if (this.#state === null) throw new Error("XXH3_createState failed");
    library.XXH3_128bits_reset(this.#state);
  }

  /** Frees the state now (else it is freed once the hasher is collected). */
  free(): void {
    if (this.#state !== null) this.#library.XXH3_freeState(this.#state);
    this.#state = null;
  }

  /** Frees the state when `owner` is collected. */
  freeWith(owner: object): void {
    _nativeStates.register(owner, { library: this.#library, state: this.#state });
  }

  reset(): this {
    this.#library.XXH3_128bits_reset(this.#state);
    return this;
  }

  update(bytes: Uint8Array): this {
    if (bytes.length > 0) {
      this.#library.XXH3_128bits_update(this.#state, bytes, BigInt(bytes.length));
    }
    return this;
  }

  updateFromFileSync(file: Deno.FsFile, length: number): number {
    const buffer = _nativeReadBuffer ??= new Uint8Array(_NATIVE_READ_BYTES);
    let total = 0;
    while (total < length) {
      const n = file.readSync(buffer.subarray(0, Math.min(buffer.length, length - total)));
      if (n === null || n === 0) break;
      this.#library.XXH3_128bits_update(this.#state, buffer, BigInt(n));
      total += n;
    }
    return total;
  }

  digest(): string {
    const struct = this.#library.XXH3_128bits_digest(this.#state);
    const hash = new DataView(struct.buffer, struct.byteOffset, struct.byteLength);
    // The canonical form (what xxhsum prints): high 64 bits, then low, big-endian.
    const high = hash.getBigUint64(8, true);
    const low = hash.getBigUint64(0, true);
    return high.toString(16).padStart(16, "0") + low.toString(16).padStart(16, "0");
  }
}

class _WasmXxh128 {
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

/** An incremental XXH3-128, on the system's libxxhash when it can be used, else WebAssembly. */
export class Xxh128 {
  readonly backend: Xxh128Backend;
  readonly #impl: _NativeXxh128 | _WasmXxh128;

  /** `backend` chooses one (tests compare them); by default xxh128Backend() decides. */
  constructor(options: { backend?: Xxh128Backend } = {}) {
    const library = options.backend === "wasm" ? null : _nativeLibrary();
    if (options.backend === "native" && !library) {
      throw new Error("libxxhash cannot be loaded here");
    }
    if (library) {
      const native = new _NativeXxh128(library);
      native.freeWith(this);
      this.#impl = native;
      this.backend = "native";
    } else {
      this.#impl = new _WasmXxh128();
      this.backend = "wasm";
    }
  }

  /** Starts over, as new: an instance can serve many digests. */
  reset(): this {
    this.#impl.reset();
    return this;
  }

  /** Adds bytes. */
  update(bytes: Uint8Array): this {
    this.#impl.update(bytes);
    return this;
  }

  /**
   * Reads up to `length` bytes from the file's current position and hashes
   * them (the WebAssembly backend reads straight into its memory). Returns the
   * bytes read, fewer only at end of file.
   */
  updateFromFileSync(file: Deno.FsFile, length: number): number {
    return this.#impl.updateFromFileSync(file, length);
  }

  /** The digest of everything added, lowercase hex; the hash can go on after. */
  digest(): string {
    return this.#impl.digest();
  }
}

/** A new hasher, or undefined where neither backend can run (no FFI, no WebAssembly). */
export function xxh128IfAvailable(): Xxh128 | undefined {
  try {
    return new Xxh128();
  } catch {
    return undefined;
  }
}

/** XXH3-128 of bytes in memory, lowercase hex. */
export function xxh128Hex(bytes: Uint8Array, options: { backend?: Xxh128Backend } = {}): string {
  return new Xxh128(options).update(bytes).digest();
}
