/**
 * A cluster whose state lives in etcd, as one handle: the client, the keys
 * under the cluster's name, its settings, its members and their liveness.
 *
 * 1. The first `fts cluster` records the settings (replicas, default part
 *    size, a cluster id) with a create-if-absent transaction; a later one
 *    whose flags contradict them gets an error naming the difference.
 * 2. An instance joins by writing `members/ADDR:PORT` (its address and
 *    failure domain; kept when it dies, so its copies are still known, until
 *    `fts forget` drops a host gone for good) and keeps `alive/ADDR:PORT`
 *    under a lease it renews; when the process or its host dies, the lease
 *    lapses and the key goes: that is how other hosts know it is down.
 * 3. A command reads the settings and members once (`view()`), the same
 *    shape a single-host cluster gets from its config file.
 */
import { EtcdClient } from "./etcd_client.ts";
import { type ClusterKeys, clusterKeys, DEFAULT_CLUSTER_NAME, ETCD_CA_ENV } from "./etcd_keys.ts";
import { EtcdManifestStore } from "./etcd_manifest_store.ts";
import { EtcdLocker } from "./etcd_locker.ts";
import { EtcdNonceStore } from "./etcd_nonce_store.ts";
import { LeaseKeeper } from "./lease_keeper.ts";
import { type ClusterView, domainOfAddress } from "../state/cluster_view.ts";
import { UsageError } from "../wire/errors.ts";
import { formatBytes } from "../base/units.ts";

export const SETTINGS_FORMAT = "fts-etcd-cluster";
export const SETTINGS_VERSION = 1;
/** An instance's liveness lease: how long after it dies other hosts see it down. */
export const ALIVE_LEASE_SECONDS = 6;
/** How often a member that said how to tell its health is asked (EtcdCluster.join). */
export const HEALTH_CHECK_MS = 2_000;

export interface ClusterSettings {
  /** A random id made when the cluster was created: names this cluster anywhere. */
  clusterId: string;
  replicas: number;
  partSize: number;
  created: string;
  /** The operator's public key (`ed25519:...`): owns the files `fts preload` placed. */
  operatorKey?: string;
}

export interface MemberRecord {
  id: string;
  /** Where clients dial it ("ADDR:PORT"). */
  address: string;
  /** Its failure domain: the zone given with --zone, else its host address. */
  domain: string;
}

/** The PEM text of the CA file FTS_ETCD_CA names, or undefined when it is not set. */
export function etcdCaCert(): string | undefined {
  const path = Deno.env.get(ETCD_CA_ENV);
  if (path === undefined || path === "") return undefined;
  try {
    return Deno.readTextFileSync(path);
  } catch (cause) {
    throw new UsageError(
      `Cannot read the etcd CA ${path} (--etcd-ca or ${ETCD_CA_ENV}): ${(cause as Error).message}`,
      { cause },
    );
  }
}

export class EtcdCluster {
  readonly etcd: EtcdClient;
  readonly name: string;
  readonly keys: ClusterKeys;
  readonly manifest: EtcdManifestStore;
  #nonces: EtcdNonceStore | undefined;

  /** `caCert`: PEM of the CA of etcd's https endpoints; by default the file FTS_ETCD_CA names. */
  constructor(endpoints: readonly string[], name = DEFAULT_CLUSTER_NAME, caCert = etcdCaCert()) {
    this.etcd = new EtcdClient(endpoints, caCert === undefined ? {} : { caCert });
    this.name = name;
    this.keys = clusterKeys(name);
    this.manifest = new EtcdManifestStore(this.etcd, this.keys);
  }

  locker(holder: string): EtcdLocker {
    return new EtcdLocker(this.etcd, this.keys, holder);
  }

  nonces(): EtcdNonceStore {
    return this.#nonces ??= new EtcdNonceStore(this.etcd, this.keys);
  }

  close(): void {
    this.manifest.close();
    this.etcd.close();
  }

  /** The recorded settings, or undefined when no cluster of this name exists yet. */
  async settings(): Promise<ClusterSettings | undefined> {
    return (await this.#settingsRecord())?.settings;
  }

  async #settingsRecord(): Promise<{ settings: ClusterSettings; modRevision: number } | undefined> {
    const kv = await this.etcd.get(this.keys.settings);
    if (!kv) return undefined;
    return { settings: _parseSettings(kv.value, this.keys.settings), modRevision: kv.modRevision };
  }

  /** The settings, or an error saying how to create the cluster and which ones etcd holds. */
  async requireSettings(): Promise<ClusterSettings> {
    const settings = await this.settings();
    if (settings) return settings;
    const others = await this.otherClusters();
    throw new UsageError(
      `No cluster named ${JSON.stringify(this.name)} in etcd at ${this.etcd.describe()}` +
        (others.length > 0
          ? ` (it holds ${others.map((n) => JSON.stringify(n)).join(", ")}: pass --cluster NAME)`
          : ': start one with "fts cluster --etcd URLS --host ADDR"'),
    );
  }

  /** Names of the other fts clusters this etcd holds. */
  async otherClusters(): Promise<string[]> {
    const { kvs } = await this.etcd.range("/fts/", { prefix: true, keysOnly: true, limit: 1000 });
    const names = new Set<string>();
    for (const { key } of kvs) {
      const match = /^\/fts\/([^/]+)\/settings$/.exec(key);
      if (match && match[1] !== this.name) names.add(match[1]!);
    }
    return [...names].sort();
  }

  /**
   * Records the settings if the cluster is new; otherwise checks `wanted`
   * against the recorded ones. Returns the settings in force.
   */
  async ensureSettings(
    wanted: { replicas?: number; partSize?: number; operatorKey?: string },
    defaults: { replicas: number; partSize: number },
  ): Promise<ClusterSettings> {
    for (let attempt = 0; attempt < 3; attempt++) {
      const record = await this.#settingsRecord();
      if (record) {
        const existing = record.settings;
        if (wanted.replicas !== undefined && wanted.replicas !== existing.replicas) {
          throw new UsageError(
            `--replicas ${wanted.replicas} contradicts cluster ${JSON.stringify(this.name)} ` +
              `in etcd (--replicas ${existing.replicas}); drop the flag or use another --cluster`,
          );
        }
        if (wanted.partSize !== undefined && wanted.partSize !== existing.partSize) {
          throw new UsageError(
            `--part-size ${formatBytes(wanted.partSize)} contradicts cluster ` +
              `${JSON.stringify(this.name)} in etcd (--part-size ${
                formatBytes(existing.partSize)
              }); drop the flag or use another --cluster`,
          );
        }
        if (wanted.operatorKey !== undefined && existing.operatorKey === undefined) {
          const updated = { ...existing, operatorKey: wanted.operatorKey };
          const { succeeded } = await this.etcd.txn(
            [{
              key: this.keys.settings,
              target: "MOD",
              result: "EQUAL",
              modRevision: record.modRevision,
            }],
            [{ put: { key: this.keys.settings, value: _encode(updated) } }],
          );
          if (!succeeded) continue;
          return updated;
        }
        return existing;
      }
      const created: ClusterSettings = {
        clusterId: crypto.randomUUID(),
        replicas: wanted.replicas ?? defaults.replicas,
        partSize: wanted.partSize ?? defaults.partSize,
        created: new Date().toISOString(),
        ...(wanted.operatorKey !== undefined ? { operatorKey: wanted.operatorKey } : {}),
      };
      const { succeeded } = await this.etcd.txn(
        [{ key: this.keys.settings, target: "CREATE", result: "EQUAL", createRevision: 0 }],
        [{ put: { key: this.keys.settings, value: _encode(created) } }],
      );
      if (succeeded) return created;
    }
    throw new Error(`The settings of cluster ${JSON.stringify(this.name)} kept changing`);
  }

  /** Every member that ever joined, by id. */
  async members(): Promise<Map<string, MemberRecord>> {
    const members = new Map<string, MemberRecord>();
    let start = this.keys.members;
    const end = `${this.keys.members.slice(0, -1)}0`;
    while (true) {
      const page = await this.etcd.range(start, { rangeEnd: end, limit: 1000 });
      for (const kv of page.kvs) {
        try {
          const record = JSON.parse(kv.value) as MemberRecord;
          if (typeof record.address === "string") members.set(record.id, record);
        } catch {
          // A damaged record: that member is unknown until it joins again.
        }
      }
      if (!page.more || page.kvs.length === 0) return members;
      start = `${page.kvs.at(-1)!.key}\0`;
    }
  }

  /** Ids of the members whose liveness lease holds now. */
  async alive(): Promise<Set<string>> {
    const { kvs } = await this.etcd.range(this.keys.alive, { prefix: true, keysOnly: true });
    return new Set(kvs.map((kv) => this.keys.idOf(kv.key)));
  }

  /**
   * Joins the cluster as `member` and keeps its liveness key alive until the
   * returned keeper is stopped (when etcd let the lease lapse, the member
   * joins again on its own). With `healthy`, asked every HEALTH_CHECK_MS,
   * the liveness key is withdrawn while it says no (an instance that cannot
   * read its part store holds no copy: healing, on the host elected to heal,
   * then copies its parts elsewhere) and put back once it says yes.
   */
  async join(
    member: MemberRecord,
    options: { healthy?: () => boolean } = {},
  ): Promise<{ stop: () => Promise<void> }> {
    let keeper: LeaseKeeper | undefined;
    let stopped = false;
    let withdrawn = false;
    const aliveKey = this.keys.aliveKey(member.id);
    const register = async (): Promise<void> => {
      if (stopped) return;
      // Again on every registration: a member forgotten while cut off (fts forget) joins anew.
      await this.etcd.put(this.keys.member(member.id), JSON.stringify(member));
      const next = await LeaseKeeper.grant(this.etcd, ALIVE_LEASE_SECONDS, () => {
        // The lease lapsed (etcd was unreachable too long): register afresh.
        void register().catch(() => {});
      });
      keeper?.stop();
      keeper = next;
      if (!withdrawn) await this.etcd.put(aliveKey, member.address, next.lease);
    };
    await register();
    const { healthy } = options;
    const checking = healthy && setInterval(() => {
      const well = healthy();
      if (well === !withdrawn || stopped || !keeper) return;
      withdrawn = !well;
      const lease = keeper.lease;
      void (well ? this.etcd.put(aliveKey, member.address, lease) : this.etcd.deleteRange(aliveKey))
        .catch(() => (withdrawn = !withdrawn));
    }, HEALTH_CHECK_MS);
    return {
      stop: async () => {
        stopped = true;
        if (checking) clearInterval(checking);
        await keeper?.revoke().catch(() => {});
      },
    };
  }

  /** The cluster as commands see it: settings, members and their domains. */
  async view(): Promise<ClusterView> {
    const settings = await this.requireSettings();
    const members = await this.members();
    const ids = [...members.keys()].sort();
    return {
      replicas: settings.replicas,
      partSize: settings.partSize,
      ids,
      address: (id) => members.get(id)?.address ?? id,
      domain: (id) => members.get(id)?.domain ?? domainOfAddress(id),
    };
  }
}

function _encode(settings: ClusterSettings): string {
  return JSON.stringify({ format: SETTINGS_FORMAT, version: SETTINGS_VERSION, ...settings });
}

function _parseSettings(text: string, key: string): ClusterSettings {
  let value: Record<string, unknown>;
  try {
    value = JSON.parse(text);
  } catch (cause) {
    throw new SyntaxError(`etcd key ${key} holds no fts settings`, { cause });
  }
  if (value?.format !== SETTINGS_FORMAT || value.version !== SETTINGS_VERSION) {
    throw new SyntaxError(
      `etcd key ${key} holds settings of another kind (format ${String(value?.format)}), ` +
        `not an fts cluster's: use another --cluster name`,
    );
  }
  const { replicas, partSize, clusterId, created, operatorKey } = value;
  if (
    typeof replicas !== "number" || typeof partSize !== "number" ||
    typeof clusterId !== "string"
  ) {
    throw new SyntaxError(`etcd key ${key} holds malformed fts settings`);
  }
  return {
    clusterId,
    replicas,
    partSize,
    created: String(created ?? ""),
    ...(typeof operatorKey === "string" ? { operatorKey } : {}),
  };
}
