/**
 * Where a cluster keeps its state in etcd: every key sits under
 * `/fts/CLUSTER/`, so one etcd can hold several clusters and a cluster never
 * reads another's keys.
 *
 *   settings             replicas, part size, cluster id, operator key
 *   writers              who may store parts, and quotas (lib/auth/writers_policy.ts)
 *   files/NAME           a file entry's header (etcd_manifest_store.ts)
 *   chunks/ID            a slice of a long part list
 *   files0               empty: the first key after every files/ key, written to
 *                        mark a point in their history (etcd_manifest_store.ts)
 *   members/ID           an instance that joined: address and failure domain
 *   alive/ID             the same, under the instance's lease: gone when it dies
 *   gateways/ID          an HTTP gateway's URL, under its lease
 *   nonces/KEY/NONCE     a used nonce of a signed request, under a lease
 *   freed/ID             digests a delete left unused, for other hosts to free
 *                        their copies (etcd_freed_parts.ts), under a lease
 *   locks/NAME           a held lock, under its holder's lease
 */
import { UsageError } from "../wire/errors.ts";

/** A cluster name: what `--cluster` accepts. */
export const CLUSTER_NAME = /^[a-z0-9][a-z0-9._-]{0,62}$/;
/** The environment variable naming the CA file of etcd's https endpoints (--etcd-ca sets it). */
export const ETCD_CA_ENV = "FTS_ETCD_CA";
/** The cluster name when none is given. */
export const DEFAULT_CLUSTER_NAME = "fts";

/** Where a cluster's state lives: etcd's endpoints (--etcd) and the cluster's name (--cluster). */
export interface EtcdTarget {
  endpoints: string[];
  cluster: string;
}

export interface ClusterKeys {
  readonly root: string;
  readonly settings: string;
  readonly writers: string;
  readonly files: string;
  readonly filesEnd: string;
  /** The key just past `files/`: a write to it marks a point in the files' history. */
  readonly filesFence: string;
  file(name: string): string;
  nameOfFile(key: string): string;
  chunk(id: string): string;
  readonly members: string;
  member(id: string): string;
  readonly alive: string;
  aliveKey(id: string): string;
  readonly gateways: string;
  gateway(id: string): string;
  nonce(signer: string, nonce: string): string;
  readonly freed: string;
  freedKey(id: string): string;
  lock(name: string): string;
  /** The id at the end of a members/, alive/ or gateways/ key. */
  idOf(key: string): string;
}

export function clusterKeys(cluster: string): ClusterKeys {
  if (!CLUSTER_NAME.test(cluster)) {
    throw new TypeError(
      `Cluster name ${JSON.stringify(cluster)} must be lowercase letters, digits, ".", "_" or "-"`,
    );
  }
  const root = `/fts/${cluster}/`;
  const files = `${root}files/`;
  return {
    root,
    settings: `${root}settings`,
    writers: `${root}writers`,
    files,
    filesEnd: prefixEnd(files),
    filesFence: prefixEnd(files),
    file: (name) => `${files}${name}`,
    nameOfFile: (key) => key.slice(files.length),
    chunk: (id) => `${root}chunks/${id}`,
    members: `${root}members/`,
    member: (id) => `${root}members/${id}`,
    alive: `${root}alive/`,
    aliveKey: (id) => `${root}alive/${id}`,
    gateways: `${root}gateways/`,
    gateway: (id) => `${root}gateways/${id}`,
    nonce: (signer, nonce) => `${root}nonces/${signer}/${nonce}`,
    freed: `${root}freed/`,
    freedKey: (id) => `${root}freed/${id}`,
    lock: (name) => `${root}locks/${name}`,
    idOf: (key) => key.slice(key.lastIndexOf("/") + 1),
  };
}

/** The end of the key range that holds every key starting with `prefix`. */
export function prefixEnd(prefix: string): string {
  const bytes = new TextEncoder().encode(prefix);
  for (let i = bytes.length - 1; i >= 0; i--) {
    if (bytes[i]! < 0xff) {
      const end = bytes.slice(0, i + 1);
      end[i]!++;
      // Latin-1 keeps each byte one char; such a key is only ever an end bound.
      return String.fromCharCode(...end);
    }
  }
  return "\0";
}

/** The etcd endpoints from `--etcd` (comma or space separated URLs), checked. */
export function parseEtcdEndpoints(
  text: string,
  /** Where the text came from, as errors name it: `--etcd`, or `FTS_ETCD`. */
  source = "--etcd",
): string[] {
  const urls = text.split(/[\s,]+/).filter((s) => s.length > 0);
  if (urls.length === 0) throw new UsageError(`${source} needs at least one URL`);
  for (const url of urls) {
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch (cause) {
      throw new UsageError(`${source} ${JSON.stringify(url)} is not a URL (http://HOST:2379)`, {
        cause,
      });
    }
    if (parsed.protocol !== "http:" && parsed.protocol !== "https:") {
      throw new UsageError(`${source} ${url}: only http:// and https:// URLs are supported`);
    }
  }
  return urls;
}
