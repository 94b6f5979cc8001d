/**
 * SHA-256 without loading node:crypto when the process starts: every node:
 * module costs each of 50 instances on a host megabytes of resident memory,
 * and an idle instance hashes nothing. So:
 * - `sha256Hasher()` streams (parts being received or re-read) through the
 *   system's libcrypto (sha256_native.ts) when it can be used, else through
 *   node:crypto's native hash, imported on first use;
 * - `sha256Hex()` digests bytes already in memory with WebCrypto, built in;
 * - `sha256HexSync()` digests metadata where the caller cannot wait (content
 *   ids while parsing): with libcrypto once loaded (or for a megabyte or
 *   more), else in plain JavaScript (about 85 MB/s), or with node:crypto once
 *   `loadNativeSha256()` ran, as it does before a whole manifest is parsed
 *   (about 6x faster: a manifest of 1 TB of 8 MiB parts costs ~15 ms, not ~95).
 */
import { nativeSha256, nativeSha256Loaded } from "./sha256_native.ts";

/**
 * Text or bytes at least this long make sha256HexSync() load libcrypto (about
 * 10-15 ms); below it the JavaScript code (about 85 MB/s) is done sooner.
 */
const _LOAD_NATIVE_FROM_BYTES = 1024 * 1024;

/** FIPS 180-4, 5.3.3: the first 32 bits of the square roots' fractions of the first 8 primes. */
// deno-fmt-ignore
const _INITIAL_STATE = [
  0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

/** FIPS 180-4, 4.2.2: the first 32 bits of the cube roots' fractions of the first 64 primes. */
// deno-fmt-ignore
const _ROUND_CONSTANTS = new Uint32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);

/** An incremental SHA-256: node:crypto's Hash, as far as fts uses it. */
export interface Sha256 {
  update(data: Uint8Array | string): unknown;
  digest(encoding: "hex"): string;
}

let _createHash: Promise<() => Sha256> | undefined;

/** node:crypto's SHA-256 constructor, imported on first use. */
function _loadCreateHash(): Promise<() => Sha256> {
  return _createHash ??= import("node:crypto").then((crypto) => () => crypto.createHash("sha256"));
}

/** A fresh incremental SHA-256: libcrypto's, else node:crypto's (loaded by the first call). */
export async function sha256Hasher(): Promise<Sha256> {
  return nativeSha256() ?? (await _loadCreateHash())();
}

let _nativeHexSync: ((data: Uint8Array | string) => string) | undefined;

/** Loads node:crypto (once), so that `sha256HexSync()` uses its native hash from then on. */
export async function loadNativeSha256(): Promise<void> {
  if (_nativeHexSync || nativeSha256()) return;
  const create = await _loadCreateHash();
  _nativeHexSync = (data) => {
    const hash = create();
    hash.update(data);
    return hash.digest("hex");
  };
}

/** SHA-256 of bytes or text (as UTF-8) already in memory, lowercase hex. */
export async function sha256Hex(data: Uint8Array | string): Promise<string> {
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  return _hex(
    new Uint8Array(await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>)),
  );
}

/**
 * SHA-256 of text (as UTF-8) or bytes, lowercase hex, computed synchronously in
 * JavaScript: meant for metadata of a few kilobytes, not for file contents.
 */
export function sha256HexSync(data: Uint8Array | string): string {
  if (_nativeHexSync) return _nativeHexSync(data);
  // Loading libcrypto for a few kilobytes would cost more than hashing them here.
  const native = nativeSha256Loaded() || data.length > _LOAD_NATIVE_FROM_BYTES
    ? nativeSha256()
    : undefined;
  if (native) return native.update(data).digest("hex");
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  // Padding: 0x80, zeros, then the length in bits as 64-bit big-endian.
  const padded = new Uint8Array(Math.ceil((bytes.length + 9) / 64) * 64);
  padded.set(bytes);
  padded[bytes.length] = 0x80;
  const view = new DataView(padded.buffer);
  view.setUint32(padded.length - 8, Math.floor(bytes.length / 2 ** 29));
  view.setUint32(padded.length - 4, (bytes.length * 8) >>> 0);
  const state = Uint32Array.from(_INITIAL_STATE);
  // One message schedule for every call: it is synchronous, and parsing a
  // large manifest hashes once per entry.
  const w = _SCHEDULE;
  for (let block = 0; block < padded.length; block += 64) {
    for (let i = 0; i < 16; i++) w[i] = view.getUint32(block + i * 4);
    for (let i = 16; i < 64; i++) {
      const w15 = w[i - 15]!;
      const w2 = w[i - 2]!;
      const s0 = _rotr(w15, 7) ^ _rotr(w15, 18) ^ (w15 >>> 3);
      const s1 = _rotr(w2, 17) ^ _rotr(w2, 19) ^ (w2 >>> 10);
      w[i] = w[i - 16]! + s0 + w[i - 7]! + s1;
    }
    let a = state[0]!, b = state[1]!, c = state[2]!, d = state[3]!;
    let e = state[4]!, f = state[5]!, g = state[6]!, h = state[7]!;
    for (let i = 0; i < 64; i++) {
      const s1 = _rotr(e, 6) ^ _rotr(e, 11) ^ _rotr(e, 25);
      const choice = (e & f) ^ (~e & g);
      const t1 = (h + s1 + choice + _ROUND_CONSTANTS[i]! + w[i]!) | 0;
      const s0 = _rotr(a, 2) ^ _rotr(a, 13) ^ _rotr(a, 22);
      const majority = (a & b) ^ (a & c) ^ (b & c);
      const t2 = (s0 + majority) | 0;
      h = g;
      g = f;
      f = e;
      e = (d + t1) | 0;
      d = c;
      c = b;
      b = a;
      a = (t1 + t2) | 0;
    }
    // Uint32Array wraps each sum modulo 2^32.
    state[0]! += a;
    state[1]! += b;
    state[2]! += c;
    state[3]! += d;
    state[4]! += e;
    state[5]! += f;
    state[6]! += g;
    state[7]! += h;
  }
  const out = new Uint8Array(32);
  const outView = new DataView(out.buffer);
  for (let i = 0; i < 8; i++) outView.setUint32(i * 4, state[i]!);
  return _hex(out);
}

function _rotr(x: number, n: number): number {
  return (x >>> n) | (x << (32 - n));
}

const _SCHEDULE = new Uint32Array(64);
const _HEX_BYTES = Array.from({ length: 256 }, (_, byte) => byte.toString(16).padStart(2, "0"));

function _hex(bytes: Uint8Array): string {
  let out = "";
  for (const byte of bytes) out += _HEX_BYTES[byte]!;
  return out;
}

/** Bytes read at a time by sha256FileRangeSync(). */
const _RANGE_READ_BYTES = 64 * 1024;
let _rangeBuffer: Uint8Array | undefined;

/**
 * SHA-256 of `length` bytes of `file` (open for reading) from byte `start`,
 * read and hashed on this thread with libcrypto: for small ranges, where
 * handing them to a hash worker costs more than hashing them. Returns the
 * digest and the bytes read (fewer at end of file), and leaves the file's
 * position after them; undefined where libcrypto cannot be used, and the
 * caller hashes elsewhere. It takes the caller's handle: an open and a close
 * per part were a fifth of the open calls of a batch of small files.
 */
export function sha256FileRangeSync(
  file: Deno.FsFile,
  start: number,
  length: number,
): { digest: string; bytes: number } | undefined {
  const hash = nativeSha256();
  if (!hash) return undefined;
  const buffer = _rangeBuffer ??= new Uint8Array(_RANGE_READ_BYTES);
  file.seekSync(start, Deno.SeekMode.Start);
  const bytes = updateFromFileSync(hash, file, length, buffer);
  return { digest: hash.digest("hex"), bytes };
}

/**
 * SHA-256 of `bytes`, lowercase hex, with libcrypto on this thread (loaded
 * by the first call): for a part of a few kilobytes held in memory, where
 * crypto.subtle's round trip to a thread costs more than the hashing.
 * Undefined where libcrypto cannot be used, and the caller hashes elsewhere.
 */
export function sha256HereHex(bytes: Uint8Array): string | undefined {
  return nativeSha256()?.update(bytes).digest("hex");
}

/**
 * Feeds up to `length` bytes of `file`, from its position, into `hash`,
 * reading through `buffer`; returns the bytes read (fewer at end of file).
 */
export function updateFromFileSync(
  hash: Sha256,
  file: Deno.FsFile,
  length: number,
  buffer: Uint8Array,
): number {
  let bytes = 0;
  while (bytes < length) {
    const n = file.readSync(buffer.subarray(0, Math.min(buffer.length, length - bytes)));
    if (n === null || n === 0) break;
    hash.update(buffer.subarray(0, n));
    bytes += n;
  }
  return bytes;
}
