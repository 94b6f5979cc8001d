/**
 * What a digest looks like as text: the manifest, the part store's file names
 * and the wire all spell digests in lowercase hex, and check them with these
 * patterns before a digest names a file or crosses a connection.
 */

/** A SHA-256 digest in lowercase hex (64 characters). */
export const DIGEST_PATTERN = /^[0-9a-f]{64}$/;
/** An XXH3-128 digest (a part's fast digest, xxh128.ts) in lowercase hex (32 characters). */
export const XXH128_PATTERN = /^[0-9a-f]{32}$/;
