/**
 * Signing part.put in tests: a key made once per test process, and the
 * cluster id the instance itself names, for Peer.putPart and for frames
 * written by hand.
 */
import { type PartSigner, Peer } from "../lib/client/peer.ts";
import { copyIdentity } from "../lib/ops/part_copy.ts";
import { signPartPut } from "../lib/auth/part_put_signature.ts";
import { sha256Hex } from "../lib/hash/sha256.ts";
import { loadOrCreateIdentity } from "../lib/auth/identity.ts";
import { ProtocolError } from "../lib/wire/errors.ts";

/** A signer for part.put to the instance behind `peer` (asks it for the cluster id). */
export async function partSigner(peer: Peer): Promise<PartSigner> {
  return { identity: await copyIdentity(), cluster: (await peer.clusterInfo()).clusterId };
}

/** The cluster id of the instance at `address`. */
export async function clusterIdAt(address: string): Promise<string> {
  const peer = await Peer.connect(address);
  try {
    return (await peer.clusterInfo()).clusterId;
  } finally {
    peer.close();
  }
}

/** A signed part.put header, for frames written by hand. */
export async function signedPutHeader(
  digest: string,
  size: number,
  cluster: string,
): Promise<{ op: "part.put"; digest: string; cluster: string; auth: unknown }> {
  const auth = await signPartPut(await copyIdentity(), { cluster, digest, size });
  return { op: "part.put", digest, cluster, auth };
}

/** Stores a part of `size` bytes of `seed` on each address, in no file; returns its digest. */
export async function putLoosePart(
  addresses: readonly string[],
  size: number,
  seed: number,
): Promise<string> {
  const bytes = new Uint8Array(size).fill(seed);
  const digest = await sha256Hex(bytes);
  for (const address of addresses) {
    const peer = await Peer.connect(address);
    try {
      const body = (async function* () {
        yield bytes;
      })();
      await peer.putPart(digest, size, body, await partSigner(peer));
    } finally {
      peer.close();
    }
  }
  return digest;
}

/**
 * Stores `bytes` on the instance at `address`, signed with the identity in
 * `identityPath` (made if missing): "stored", or the refusal as "CODE: message".
 */
export async function putPartAs(
  address: string,
  identityPath: string,
  bytes: Uint8Array,
): Promise<string> {
  const identity = await loadOrCreateIdentity(identityPath);
  const digest = await sha256Hex(bytes);
  const peer = await Peer.connect(address);
  try {
    const cluster = (await peer.clusterInfo()).clusterId;
    await peer.putPart(
      digest,
      bytes.length,
      (async function* () {
        yield bytes;
      })(),
      { identity, cluster },
    );
    return "stored";
  } catch (error) {
    if (error instanceof ProtocolError) return `${error.code}: ${error.message}`;
    throw error;
  } finally {
    peer.close();
  }
}
