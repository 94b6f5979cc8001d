/**
 * Signing part.put in tests: a key made once per test process, and the
 * cluster id the instance itself names, for Peer.putPart and for frames
 * written by hand.
 */
import { type PartSigner, Peer } from "../lib/client/peer.ts";
import { copyIdentity } from "../lib/ops/part_copy.ts";
import { signPartPut } from "../lib/auth/part_put_signature.ts";

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
