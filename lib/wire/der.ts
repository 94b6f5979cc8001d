/**
 * The little of ASN.1 DER that X.509 certificates need (x509.ts): encoders for
 * the types a certificate uses, and a reader of tag-length-value elements to
 * take a stored certificate apart again. Definite lengths only, as DER has.
 */
import { concatBytes } from "../base/concat_bytes.ts";

/** Universal tags, and the context-specific ones a certificate uses. */
export const TAG = {
  boolean: 0x01,
  integer: 0x02,
  bitString: 0x03,
  octetString: 0x04,
  oid: 0x06,
  utf8String: 0x0c,
  utcTime: 0x17,
  generalizedTime: 0x18,
  sequence: 0x30,
  set: 0x31,
} as const;

/** Context-specific tag `n`: constructed (EXPLICIT, or IMPLICIT of a constructed type) or not. */
export function contextTag(n: number, constructed: boolean): number {
  return 0x80 | (constructed ? 0x20 : 0) | n;
}

function _length(length: number): Uint8Array<ArrayBuffer> {
  if (length < 0x80) return Uint8Array.of(length);
  const bytes: number[] = [];
  for (let rest = length; rest > 0; rest = Math.floor(rest / 256)) bytes.unshift(rest & 0xff);
  return Uint8Array.of(0x80 | bytes.length, ...bytes);
}

/** One element: tag, length, contents. */
export function derElement(tag: number, ...contents: Uint8Array[]): Uint8Array<ArrayBuffer> {
  const body = concatBytes(...contents);
  return concatBytes(Uint8Array.of(tag), _length(body.length), body);
}

export function derSequence(...items: Uint8Array[]): Uint8Array<ArrayBuffer> {
  return derElement(TAG.sequence, ...items);
}

export function derSet(...items: Uint8Array[]): Uint8Array<ArrayBuffer> {
  return derElement(TAG.set, ...items);
}

/** A non-negative INTEGER from its big-endian magnitude (leading zeros dropped, sign byte added). */
export function derUnsignedInteger(magnitude: Uint8Array): Uint8Array<ArrayBuffer> {
  let start = 0;
  while (start < magnitude.length - 1 && magnitude[start] === 0) start++;
  const trimmed = magnitude.subarray(start);
  const sign = (trimmed[0] ?? 0) >= 0x80 ? Uint8Array.of(0) : new Uint8Array(0);
  return derElement(TAG.integer, sign, trimmed.length === 0 ? Uint8Array.of(0) : trimmed);
}

export function derSmallInteger(value: number): Uint8Array<ArrayBuffer> {
  if (!Number.isInteger(value) || value < 0 || value > 0x7fffffff) {
    throw new RangeError(`derSmallInteger takes 0 to 2^31-1, got ${value}`);
  }
  return derUnsignedInteger(Uint8Array.of(value >>> 24, value >>> 16, value >>> 8, value));
}

export function derBoolean(value: boolean): Uint8Array<ArrayBuffer> {
  return derElement(TAG.boolean, Uint8Array.of(value ? 0xff : 0));
}

/** An OBJECT IDENTIFIER from its dotted form ("1.2.840.10045.2.1"). */
export function derOid(dotted: string): Uint8Array<ArrayBuffer> {
  const arcs = dotted.split(".").map(Number);
  if (arcs.length < 2 || arcs.some((arc) => !Number.isSafeInteger(arc) || arc < 0)) {
    throw new RangeError(`Not an object identifier: ${dotted}`);
  }
  const bytes: number[] = [];
  for (const arc of [arcs[0]! * 40 + arcs[1]!, ...arcs.slice(2)]) {
    const group = [arc & 0x7f];
    for (let rest = Math.floor(arc / 128); rest > 0; rest = Math.floor(rest / 128)) {
      group.unshift(0x80 | (rest & 0x7f));
    }
    bytes.push(...group);
  }
  return derElement(TAG.oid, Uint8Array.from(bytes));
}

export function derUtf8String(text: string): Uint8Array<ArrayBuffer> {
  return derElement(TAG.utf8String, new TextEncoder().encode(text));
}

export function derOctetString(bytes: Uint8Array): Uint8Array<ArrayBuffer> {
  return derElement(TAG.octetString, bytes);
}

/** A BIT STRING of whole bytes (no unused bits). */
export function derBitString(bytes: Uint8Array): Uint8Array<ArrayBuffer> {
  return derElement(TAG.bitString, Uint8Array.of(0), bytes);
}

/**
 * A named-bit BIT STRING (key usage) with bits `bits` set, bit 0 the most
 * significant: DER drops trailing zero bits and counts them as unused.
 */
export function derNamedBits(bits: number[]): Uint8Array<ArrayBuffer> {
  const highest = Math.max(...bits);
  const bytes = new Uint8Array(Math.floor(highest / 8) + 1);
  for (const bit of bits) bytes[bit >> 3]! |= 0x80 >> (bit & 7);
  const unused = 7 - (highest & 7);
  return derElement(TAG.bitString, Uint8Array.of(unused), bytes);
}

/** A time as X.509 wants it: UTCTime up to 2049, GeneralizedTime from 2050. */
export function derTime(date: Date): Uint8Array<ArrayBuffer> {
  const iso = date.toISOString(); // 2026-12-06T09:11:25.123Z
  const digits = iso.slice(0, 19).replace(/[-T:]/g, "") + "Z"; // 20261206091125Z
  const year = date.getUTCFullYear();
  return year < 2050
    ? derElement(TAG.utcTime, new TextEncoder().encode(digits.slice(2)))
    : derElement(TAG.generalizedTime, new TextEncoder().encode(digits));
}

/** One element read back: its tag, its contents, and the whole encoding. */
export interface DerNode {
  tag: number;
  contents: Uint8Array<ArrayBuffer>;
  encoded: Uint8Array<ArrayBuffer>;
}

/** The elements one after another in `bytes` (a constructed element's contents). */
export function readDerElements(bytes: Uint8Array<ArrayBuffer>): DerNode[] {
  const nodes: DerNode[] = [];
  let at = 0;
  while (at < bytes.length) {
    const start = at;
    const tag = bytes[at++]!;
    if ((tag & 0x1f) === 0x1f) throw new RangeError(`DER: multi-byte tag at byte ${start}`);
    let length = bytes[at++];
    if (length === undefined) throw new RangeError(`DER: truncated at byte ${start}`);
    if (length >= 0x80) {
      const count = length & 0x7f;
      if (count === 0 || count > 4) {
        throw new RangeError(`DER: bad length form 0x${length.toString(16)} at byte ${start}`);
      }
      length = 0;
      for (let i = 0; i < count; i++) length = length * 256 + (bytes[at++] ?? NaN);
    }
    const end = at + length;
    if (!(end <= bytes.length)) throw new RangeError(`DER: element at byte ${start} overruns`);
    nodes.push({ tag, contents: bytes.subarray(at, end), encoded: bytes.subarray(start, end) });
    at = end;
  }
  return nodes;
}
