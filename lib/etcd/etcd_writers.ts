/**
 * The writers policy of a cluster in etcd, kept in `/fts/CLUSTER/writers`
 * (lib/auth/writers_policy.ts says what it holds). A change is a
 * compare-and-swap on the key's revision, tried again when another change
 * landed first, so two operators changing it at once both land. No key means
 * the open policy every new cluster has.
 */
import { type EtcdClient } from "./etcd_client.ts";
import { type ClusterKeys } from "./etcd_keys.ts";
import {
  changePolicy,
  encodePolicy,
  openPolicy,
  parsePolicy,
  type WritersChange,
  type WritersPolicy,
} from "../auth/writers_policy.ts";

/** Compare-and-swap rounds before a change gives up (others kept changing the policy). */
const CHANGE_ATTEMPTS = 10;

/** The policy in etcd (open when none was ever set). */
export async function readEtcdWriters(etcd: EtcdClient, keys: ClusterKeys): Promise<WritersPolicy> {
  return (await _read(etcd, keys)).policy;
}

/** Applies `change` to the policy in etcd; returns the policy now in force. */
export async function changeEtcdWriters(
  etcd: EtcdClient,
  keys: ClusterKeys,
  change: WritersChange,
): Promise<WritersPolicy> {
  for (let attempt = 0; attempt < CHANGE_ATTEMPTS; attempt++) {
    const { policy, modRevision } = await _read(etcd, keys);
    const next = changePolicy(policy, change);
    const { succeeded } = await etcd.txn(
      [
        modRevision === undefined
          ? { key: keys.writers, target: "CREATE", result: "EQUAL", createRevision: 0 }
          : { key: keys.writers, target: "MOD", result: "EQUAL", modRevision },
      ],
      [{ put: { key: keys.writers, value: encodePolicy(next) } }],
    );
    if (succeeded) return next;
  }
  throw new Error(
    `The writers policy in etcd (${keys.writers}) kept changing: ${CHANGE_ATTEMPTS} tries failed`,
  );
}

async function _read(
  etcd: EtcdClient,
  keys: ClusterKeys,
): Promise<{ policy: WritersPolicy; modRevision: number | undefined }> {
  const kv = await etcd.get(keys.writers);
  if (!kv) return { policy: openPolicy(), modRevision: undefined };
  return { policy: parsePolicy(kv.value, `etcd key ${keys.writers}`), modRevision: kv.modRevision };
}

/**
 * Records `policy` in etcd unless the cluster there has one already (a
 * single-host cluster moving to etcd keeps its writers); true when written.
 */
export async function adoptEtcdWriters(
  etcd: EtcdClient,
  keys: ClusterKeys,
  policy: WritersPolicy,
): Promise<boolean> {
  const { succeeded } = await etcd.txn(
    [{ key: keys.writers, target: "CREATE", result: "EQUAL", createRevision: 0 }],
    [{ put: { key: keys.writers, value: encodePolicy(policy) } }],
  );
  return succeeded;
}
