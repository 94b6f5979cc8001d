/**
 * Signed part.put: storing a part needs an Ed25519 signature, so every part
 * an instance takes is attributable to a key, and a client that merely
 * connects stores nothing. The signature covers the cluster's id, the part's
 * digest and size, the signer's key and a timestamp; there is no nonce,
 * because a replayed part.put stores the same bytes under the same digest
 * (content addressing makes it harmless), so checking costs one Ed25519
 * verify and no shared state. Whether the key may store parts at all is the
 * writers policy's call (writers_policy.ts), made after this check.
 *
 * A part.has may be signed the same way (its own context, no size): only a
 * signed one marks the copy as in use (PartStore.touch), so that a stranger
 * asking about a part cannot keep it from being collected as unused.
 */
import { ProtocolError } from "../wire/errors.ts";
import { type KeyAuth } from "../wire/ops_signed.ts";
import { type Identity, signWith, toBase64Url } from "./identity.ts";
import { assertFresh, assertSignature } from "./signed_request.ts";

/** First line of every signed part.put message: names the scheme. */
export const PART_PUT_SIGNING_CONTEXT = "fts-part-put-v1";
/** First line of every signed part.has message. */
export const PART_HAS_SIGNING_CONTEXT = "fts-part-has-v1";

/** What a part.put signature is about. */
export interface PartPutFields {
  cluster: string;
  digest: string;
  size: number;
}

/**
 * The exact bytes signed: UTF-8 of `fts-part-put-v1\n` + JSON
 * `["part.put", key, timestamp, cluster, digest, size]`.
 */
export function partPutMessage(
  fields: PartPutFields,
  key: string,
  timestamp: number,
): Uint8Array<ArrayBuffer> {
  const body = JSON.stringify([
    "part.put",
    key,
    timestamp,
    fields.cluster,
    fields.digest,
    fields.size,
  ]);
  return new TextEncoder().encode(`${PART_PUT_SIGNING_CONTEXT}\n${body}`);
}

/** Signs a part.put as `identity`, now. */
export async function signPartPut(
  identity: Identity,
  fields: PartPutFields,
  now = Date.now(),
): Promise<KeyAuth> {
  return await _sign(identity, partPutMessage(fields, identity.owner, now), now);
}

/**
 * Checks a part.put's cluster, freshness and signature (cheap checks first).
 * Throws UNAUTHORIZED saying which failed; returns the signer's key.
 */
export async function checkPartPut(
  fields: PartPutFields,
  auth: KeyAuth,
  clusterId: string,
  now = Date.now(),
): Promise<string> {
  return await _check(
    "part.put",
    fields.cluster,
    clusterId,
    auth,
    now,
    partPutMessage(
      fields,
      auth.key,
      auth.timestamp,
    ),
  );
}

/**
 * The exact bytes a part.has signature covers: UTF-8 of `fts-part-has-v1\n`
 * + JSON `["part.has", key, timestamp, cluster, digest]`.
 */
export function partHasMessage(
  fields: { cluster: string; digest: string },
  key: string,
  timestamp: number,
): Uint8Array<ArrayBuffer> {
  const body = JSON.stringify(["part.has", key, timestamp, fields.cluster, fields.digest]);
  return new TextEncoder().encode(`${PART_HAS_SIGNING_CONTEXT}\n${body}`);
}

/** Signs a part.has as `identity`, now. */
export async function signPartHas(
  identity: Identity,
  fields: { cluster: string; digest: string },
  now = Date.now(),
): Promise<KeyAuth> {
  return await _sign(identity, partHasMessage(fields, identity.owner, now), now);
}

/** Checks a signed part.has as checkPartPut does a part.put; returns the signer's key. */
export async function checkPartHas(
  fields: { cluster: string; digest: string },
  auth: KeyAuth,
  clusterId: string,
  now = Date.now(),
): Promise<string> {
  return await _check(
    "part.has",
    fields.cluster,
    clusterId,
    auth,
    now,
    partHasMessage(
      fields,
      auth.key,
      auth.timestamp,
    ),
  );
}

async function _sign(
  identity: Identity,
  message: Uint8Array<ArrayBuffer>,
  now: number,
): Promise<KeyAuth> {
  return {
    key: identity.owner,
    timestamp: now,
    signature: toBase64Url(await signWith(identity, message)),
  };
}

/** The cluster, freshness, then the signature (cheap checks first); returns the signer's key. */
async function _check(
  op: string,
  cluster: string,
  clusterId: string,
  auth: KeyAuth,
  now: number,
  message: Uint8Array<ArrayBuffer>,
): Promise<string> {
  _assertCluster(op, cluster, clusterId);
  assertFresh(op, auth.timestamp, now);
  await assertSignature(op, auth, message);
  return auth.key;
}

function _assertCluster(op: string, cluster: string, clusterId: string): void {
  if (cluster === clusterId) return;
  throw new ProtocolError(
    "UNAUTHORIZED",
    `${op} is signed for cluster ${JSON.stringify(cluster.slice(0, 64))}, ` +
      `not this one (${clusterId})`,
  );
}
