/**
 * Signed requests: how a client proves it holds an owner's key, and how a
 * server checks it. The signature covers a canonical encoding of the op, the
 * signer's key, a timestamp, a one-time nonce and the op's fields in a fixed
 * order (for file.publish, the SHA-256 of its body). The fields name the
 * cluster, so no other cluster accepts it, and for a delete or rename the
 * content id of the entry it changes, so it means nothing once that entry is
 * replaced; nothing names the instance, so any instance of the cluster
 * accepts it, and the nonce cache they share stops a replay.
 */
import { ProtocolError } from "../wire/errors.ts";
import {
  fromBase64Url,
  type Identity,
  signWith,
  toBase64Url,
  verifySignature,
} from "./identity.ts";
import { type Request } from "../wire/ops.ts";
import { type SignedAuth } from "../wire/ops_signed.ts";

/** How far a signed request's timestamp may be from the server's clock, either way. */
export const SIGNATURE_MAX_AGE_MS = 5 * 60_000;
/** Random bytes in a nonce: 128 bits, so two requests never share one by chance. */
export const NONCE_BYTES = 16;
/** What a nonce looks like on the wire: base64url of NONCE_BYTES bytes. */
export const NONCE_PATTERN = /^[A-Za-z0-9_-]{22}$/;
/** First line of every signed message: names the scheme, so a signature means nothing elsewhere. */
export const SIGNING_CONTEXT = "fts-signed-request-v2";

/** The requests that change the manifest, and so must be signed. */
export type SignedRequest = Extract<Request, { auth: SignedAuth }>;
type _Without<T, K extends keyof T> = T extends unknown ? Omit<T, K> : never;
/** A signed request before it is signed. */
export type UnsignedRequest = _Without<SignedRequest, "auth">;

/** The op's fields in their fixed order: what the signature covers besides the auth fields. */
export function signedFields(request: UnsignedRequest): (string | number | boolean)[] {
  switch (request.op) {
    case "file.publish":
      return [
        request.cluster,
        request.name,
        request.replace,
        request.size,
        request.partSize,
        request.bodyDigest,
      ];
    case "file.delete":
      return [request.cluster, request.name, request.contentId];
    case "file.rename":
      return [request.cluster, request.name, request.contentId, request.to];
  }
}

/**
 * The exact bytes that are signed: UTF-8 of
 * `fts-signed-request-v2\n` + JSON `[op, key, timestamp, nonce, [fields...]]`.
 * JSON of an array of strings, numbers and booleans has one spelling.
 */
export function signingMessage(
  request: UnsignedRequest,
  auth: Omit<SignedAuth, "signature">,
): Uint8Array<ArrayBuffer> {
  const body = JSON.stringify([
    request.op,
    auth.key,
    auth.timestamp,
    auth.nonce,
    signedFields(request),
  ]);
  return new TextEncoder().encode(`${SIGNING_CONTEXT}\n${body}`);
}

/** Signs a request as `identity`, now, with a fresh nonce. */
export async function signRequest<T extends UnsignedRequest>(
  identity: Identity,
  request: T,
  now = Date.now(),
): Promise<T & { auth: SignedAuth }> {
  const nonce = toBase64Url(crypto.getRandomValues(new Uint8Array(NONCE_BYTES)));
  const unsigned = { key: identity.owner, timestamp: now, nonce };
  const signature = toBase64Url(await signWith(identity, signingMessage(request, unsigned)));
  return { ...request, auth: { ...unsigned, signature } };
}

/**
 * Checks a signed request's freshness and signature (not its nonce: see
 * replay_guard.ts). Throws UNAUTHORIZED saying which check failed.
 */
export async function checkSignedRequest(request: SignedRequest, now = Date.now()): Promise<void> {
  const { auth } = request;
  assertFresh(request.op, auth.timestamp, now);
  if (!NONCE_PATTERN.test(auth.nonce)) {
    throw new ProtocolError("UNAUTHORIZED", `Signed ${request.op} has a malformed nonce`);
  }
  const { signature: _, ...unsigned } = auth;
  const { auth: __, ...fields } = request;
  await assertSignature(request.op, auth, signingMessage(fields, unsigned));
}

/** Throws UNAUTHORIZED when a signed `op`'s timestamp is over SIGNATURE_MAX_AGE_MS off `now`. */
export function assertFresh(op: string, timestamp: number, now: number): void {
  const skew = now - timestamp;
  if (Math.abs(skew) > SIGNATURE_MAX_AGE_MS) {
    throw new ProtocolError(
      "UNAUTHORIZED",
      `Signed ${op} is ${skew > 0 ? "stale" : "from the future"}: its timestamp is ${
        Math.round(Math.abs(skew) / 1000)
      } s off this server's clock (at most ${SIGNATURE_MAX_AGE_MS / 1000} s allowed)`,
    );
  }
}

/** Throws UNAUTHORIZED unless `auth.signature` is `auth.key`'s signature of `message`. */
export async function assertSignature(
  op: string,
  auth: { key: string; signature: string },
  message: Uint8Array<ArrayBuffer>,
): Promise<void> {
  let signature: Uint8Array<ArrayBuffer>;
  try {
    signature = fromBase64Url(auth.signature);
  } catch {
    throw new ProtocolError("UNAUTHORIZED", `Signed ${op} has a malformed signature`);
  }
  if (!(await verifySignature(auth.key, message, signature))) {
    throw new ProtocolError(
      "UNAUTHORIZED",
      `Signature of ${op} does not verify for key ${auth.key.slice(0, 20)}...`,
    );
  }
}
