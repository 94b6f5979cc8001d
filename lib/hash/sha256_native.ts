/**
 * SHA-256 from the system's OpenSSL libcrypto (Debian's libssl3, which curl,
 * wget and openssl depend on), called through Deno's FFI: its SHA-NI code,
 * as fast as node:crypto's (1 GiB in the same time here, same digests), with
 * nothing to load but the library. Importing node:crypto cost a hash worker
 * about 50 ms of its start and an instance megabytes of resident memory; a
 * fetch that must verify one repaired part paid that for 8 MiB of hashing.
 *
 * Used when the library loads and passes a self-test; sha256.ts falls back to
 * node:crypto otherwise.
 */

const _SYMBOLS = {
  SHA256_Init: { parameters: ["buffer"], result: "i32" },
  SHA256_Update: { parameters: ["buffer", "buffer", "usize"], result: "i32" },
  SHA256_Final: { parameters: ["buffer", "buffer"], result: "i32" },
} as const;

type _Library = Deno.DynamicLibrary<typeof _SYMBOLS>["symbols"];

/** The library's soname on each system it is looked for on. */
const _LIBRARY_NAME: Partial<Record<typeof Deno.build.os, string>> = {
  linux: "libcrypto.so.3",
  darwin: "libcrypto.3.dylib",
};

/** sizeof(SHA256_CTX) is 112 bytes in OpenSSL 1.1 and 3; the rest is room to spare. */
const _CONTEXT_BYTES = 128;

/** SHA-256 of "abc" (FIPS 180-2, B.1), the self-test's answer. */
const _ABC_DIGEST = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

const _encoder = new TextEncoder();
const _HEX_BYTES = Array.from({ length: 256 }, (_, byte) => byte.toString(16).padStart(2, "0"));

let _library: _Library | null | undefined;

/** An incremental SHA-256 in libcrypto; `digest` ends it, as node:crypto's does. */
export class NativeSha256 {
  readonly #library: _Library;
  readonly #context = new Uint8Array(_CONTEXT_BYTES);

  constructor(library: _Library) {
    this.#library = library;
    if (library.SHA256_Init(this.#context) !== 1) throw new Error("SHA256_Init failed");
  }

  update(data: Uint8Array | string): this {
    const bytes = typeof data === "string" ? _encoder.encode(data) : data;
    if (bytes.length > 0) this.#library.SHA256_Update(this.#context, bytes, BigInt(bytes.length));
    return this;
  }

  digest(_encoding: "hex"): string {
    const out = new Uint8Array(32);
    this.#library.SHA256_Final(out, this.#context);
    let hex = "";
    for (const byte of out) hex += _HEX_BYTES[byte]!;
    return hex;
  }
}

/** libcrypto, once loaded and checked; null when it cannot be used. */
function _loaded(): _Library | null {
  if (_library !== undefined) return _library;
  _library = null;
  const name = _LIBRARY_NAME[Deno.build.os];
  if (!name) return null;
  try {
    const library = Deno.dlopen(name, _SYMBOLS).symbols;
    // A library that answers wrongly (another ABI, a stub) is not used.
    if (new NativeSha256(library).update("abc").digest("hex") === _ABC_DIGEST) _library = library;
  } catch {
    // Not installed, or no permission to load libraries: node:crypto serves.
  }
  return _library;
}

/** Whether libcrypto was loaded already (loading it takes 10-15 ms here). */
export function nativeSha256Loaded(): boolean {
  return _library !== undefined && _library !== null;
}

/** A new libcrypto SHA-256, or undefined when the library cannot be used here. */
export function nativeSha256(): NativeSha256 | undefined {
  const library = _loaded();
  return library ? new NativeSha256(library) : undefined;
}
