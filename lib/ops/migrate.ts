/**
 * Moving a single-host cluster's state into etcd, so that its files stay
 * published and its parts stay where they are: the data directory becomes
 * this host's part of a cluster that can grow to other hosts.
 *
 * 1. Everything is checked before anything is written: the directory holds a
 *    cluster that is not running, `--host` is an address of this machine,
 *    etcd answers, its settings (if any) agree on the replica count, and no
 *    entry it holds differs from what this migration would write (with
 *    `merge`, entries of other names may stay, and an entry of the same
 *    name, content and owner gets this directory's copies added to its
 *    replicas: healing then keeps R of them, spread over the hosts).
 * 2. Then the settings (replicas, part size, operator key), the writers
 *    policy (unless etcd has one), one member record
 *    per instance (`ADDR:PORT`, its domain the host address; no liveness key:
 *    the instances write that when they start) and the entries, their replica
 *    ids rewritten from `PORT` to `ADDR:PORT`, in compare-and-swap batches
 *    that stay under etcd's limit of operations per transaction.
 * 3. Last, config.json records `--host` (a cluster in etcd listens there) and
 *    the manifest files are renamed to `*.migrated`, so that a cluster started
 *    on this directory without `--etcd` can never serve a stale copy.
 *
 * A run that crashed part way is run again as it was: an entry already in
 * etcd exactly as this migration writes it counts as done.
 */
import { readWritersFile, writersPath } from "../auth/writers_file.ts";
import { adoptEtcdWriters } from "../etcd/etcd_writers.ts";
import {
  type ClusterConfig,
  CONFIG_FORMAT,
  CONFIG_VERSION,
  dataPaths,
  instanceIds,
  loadConfig,
} from "../state/config.ts";
import { FileManifestStore } from "../state/file_manifest_store.ts";
import { type FileEntry } from "../state/manifest.ts";
import { type StoredEntry } from "../state/manifest_store.ts";
import { markEtcdHost } from "../state/manifest_guard.ts";
import { readIdentityOwner } from "../auth/identity.ts";
import { EtcdCluster, type MemberRecord } from "../etcd/etcd_cluster.ts";
import { exists, writeFileAtomic } from "../base/fs_util.ts";
import { withFileLock } from "../base/lock.ts";
import { join } from "../base/paths.ts";
import { runPool } from "../base/run_pool.ts";
import { UsageError } from "../wire/errors.ts";
import { checkHostAddress } from "../etcd/host_address.ts";
import { livePid, runningSupervisor } from "./instances.ts";

/**
 * Entries per etcd transaction: each reads, compares and puts every one, and
 * etcd refuses a transaction of more than 128 operations (--max-txn-ops).
 */
export const MIGRATE_BATCH_ENTRIES = 100;
/** Transactions in flight at once while entries are written. */
const MIGRATE_BATCHES_AT_ONCE = 4;
/** Entries read from the file manifest (and from etcd) per page. */
const MIGRATE_PAGE_ENTRIES = 1000;
/** What the manifest files are renamed to once etcd holds their entries. */
export const MIGRATED_SUFFIX = ".migrated";
/** Names that conflict, shown in an error before "...". */
const NAMES_SHOWN = 5;

export interface MigrateOptions {
  dir: string;
  endpoints: string[];
  cluster: string;
  host: string;
  /** Allow etcd to hold entries of other names already (never a different entry of ours). */
  merge?: boolean;
}

export interface MigrateReport {
  config: ClusterConfig;
  /** Entries in the file manifest, and those already in etcd as written (a resumed run). */
  files: number;
  alreadyThere: number;
  parts: number;
  copies: number;
  bytes: number;
  instances: string[];
  replicas: number;
  partSize: number;
  /** Where the manifest files went; empty when a previous run moved them. */
  movedAside: string[];
  /** The operator key in etcd is another one than this directory's (its files are its). */
  otherOperator: boolean;
  /** Nothing was left to do: a previous run finished. */
  finishedBefore: boolean;
}

/** An entry as it lives in etcd after migration: every replica id `ADDR:PORT`. */
export function migratedEntry(entry: FileEntry, host: string): FileEntry {
  return {
    ...entry,
    parts: entry.parts.map((part) => ({
      ...part,
      replicas: part.replicas.map((id) => (id.includes(":") ? id : `${host}:${id}`)),
    })),
  };
}

/**
 * A directory migrated before may be migrated again (to finish, say) only to
 * where it went: its config records the host, and that cluster in etcd lists
 * its instances. Another --host would record instances that hold none of the
 * copies the entries name (every file LOST); another --cluster, a cluster
 * whose files are none of this directory's parts.
 */
async function _refuseOtherTarget(
  cluster: EtcdCluster,
  config: ClusterConfig,
  options: MigrateOptions,
): Promise<void> {
  if (config.host !== options.host) {
    throw new UsageError(
      `${options.dir} was migrated with --host ${config.host} before (its instances are ` +
        `${config.host}:PORT in etcd); run fts migrate or fts cluster with --host ${config.host}`,
    );
  }
  const members = await cluster.members();
  const ours = instanceIds(config).map((id) => `${config.host}:${id}`);
  if (!ours.some((id) => members.has(id))) {
    throw new UsageError(
      `${options.dir} was migrated before, but cluster "${options.cluster}" in etcd lists none ` +
        `of its instances (${ours[0]}, ...): it went to another --cluster`,
    );
  }
}

/** Whether two entries say the same thing, whatever the order of their keys. */
function _sameEntry(a: FileEntry, b: FileEntry): boolean {
  const canonical = (e: FileEntry) =>
    JSON.stringify([
      e.name,
      e.size,
      e.partSize,
      e.contentId,
      e.owner,
      e.created,
      e.parts.map((p) => [p.digest, p.xxh128 ?? null, p.size, p.replicas]),
    ]);
  return canonical(a) === canonical(b);
}

/** Entries of one file: the same content, shape and owner (replicas and dates may differ). */
function _sameFile(a: FileEntry, b: FileEntry): boolean {
  return a.contentId === b.contentId && a.owner === b.owner && a.size === b.size &&
    a.partSize === b.partSize && a.parts.length === b.parts.length &&
    a.parts.every((part, i) => part.digest === b.parts[i]!.digest);
}

/** `there` with `ours`'s copies added to each part's replicas (for --merge; see _sameFile). */
function _withCopiesOf(there: FileEntry, ours: FileEntry): FileEntry {
  return {
    ...there,
    parts: there.parts.map((part, i) => ({
      ...part,
      replicas: [...new Set([...part.replicas, ...ours.parts[i]!.replicas])],
    })),
  };
}

/** Runs the migration; throws UsageError (nothing written) on a refusal. */
export async function migrate(options: MigrateOptions): Promise<MigrateReport> {
  const { dir, host } = options;
  const config = await loadConfig(dir);
  if (!config) {
    throw new UsageError(`No cluster in ${dir} (no config.json): nothing to migrate`);
  }
  await _refuseIfRunning(dir, config);
  checkHostAddress(host);
  const paths = dataPaths(dir);
  const manifestFiles = ["manifest.json", "manifest.journal"].map((f) => join(dir, f));
  const cluster = new EtcdCluster(options.endpoints, options.cluster);
  try {
    // Held throughout: a preload into this directory meanwhile would be lost.
    return await withFileLock(paths.lock, async () => {
      const finishedBefore = !(await exists(manifestFiles[0]!)) &&
        await exists(manifestFiles[0]! + MIGRATED_SUFFIX);
      if (finishedBefore) await _refuseOtherTarget(cluster, config, options);
      const source = new FileManifestStore(dir);
      const operatorKey = await readIdentityOwner(paths.operatorIdentity);
      const plan = await _check(cluster, config, options, finishedBefore ? undefined : source);
      // The part size is a default for new files, no contradiction: etcd's stays.
      const settings = await cluster.ensureSettings(
        { replicas: config.replicas, ...(operatorKey !== undefined ? { operatorKey } : {}) },
        config,
      );
      await _writeMembers(cluster, plan.members);
      // A closed cluster must not open up by moving: its writers go along, unless etcd has some.
      if (await exists(writersPath(dir))) {
        await adoptEtcdWriters(cluster.etcd, cluster.keys, await readWritersFile(dir));
      }
      const counts = finishedBefore
        ? { files: 0, alreadyThere: 0, parts: 0, copies: 0, bytes: 0 }
        : await _writeEntries(cluster, source, options);
      // A cluster in etcd listens on --host: the config must say so, or it contradicts the flag.
      if (config.host !== host) {
        await writeFileAtomic(
          paths.config,
          JSON.stringify(
            { format: CONFIG_FORMAT, version: CONFIG_VERSION, ...config, host },
            null,
            2,
          ) + "\n",
        );
      }
      // Marked before the manifest goes: a command without --etcd is then told to pass it.
      await markEtcdHost(dir, options.cluster, [...options.endpoints], settings.clusterId);
      const movedAside: string[] = [];
      for (const path of manifestFiles) {
        if (!(await exists(path))) continue;
        await Deno.rename(path, path + MIGRATED_SUFFIX);
        movedAside.push(path + MIGRATED_SUFFIX);
      }
      return {
        config: { ...config, host },
        ...counts,
        instances: plan.members.map((m) => m.id),
        replicas: settings.replicas,
        partSize: settings.partSize,
        movedAside,
        otherOperator: operatorKey !== undefined && settings.operatorKey !== operatorKey,
        finishedBefore,
      };
    });
  } finally {
    cluster.close();
  }
}

/** A cluster whose instances run would go on changing the file manifest: stop it first. */
async function _refuseIfRunning(dir: string, config: ClusterConfig): Promise<void> {
  const supervisor = await runningSupervisor(dir);
  // A state to change, not a mistake in the command: exit 1.
  if (supervisor) {
    throw new Error(
      `The cluster in ${dir} is running (fts cluster, pid ${supervisor.pid}): stop it first`,
    );
  }
  for (const id of instanceIds(config)) {
    const pid = await livePid(dir, id);
    if (pid !== undefined) {
      throw new Error(
        `Instance ${id} of the cluster in ${dir} is running (pid ${pid}): stop it first`,
      );
    }
  }
}

/** Every check against etcd, before anything is written; returns the members to record. */
async function _check(
  cluster: EtcdCluster,
  config: ClusterConfig,
  options: MigrateOptions,
  source: FileManifestStore | undefined,
): Promise<{ members: MemberRecord[] }> {
  const { host } = options;
  const settings = await cluster.settings();
  if (settings && settings.replicas !== config.replicas) {
    throw new UsageError(
      `Cluster ${JSON.stringify(cluster.name)} in etcd has --replicas ${settings.replicas}, ` +
        `the cluster in ${options.dir} ${config.replicas}: use another --cluster name`,
    );
  }
  const members = instanceIds(config).map((port): MemberRecord => {
    const id = `${host}:${port}`;
    return { id, address: id, domain: host };
  });
  const alive = await cluster.alive();
  const running = members.filter((m) => alive.has(m.id)).map((m) => m.id);
  if (running.length > 0) {
    throw new UsageError(
      `Instances ${running.slice(0, NAMES_SHOWN).join(", ")} are already running in cluster ` +
        `${JSON.stringify(cluster.name)} (etcd says so): stop them first`,
    );
  }
  if (source === undefined) return { members };
  // Every entry etcd holds must be one this migration writes, exactly (or, with --merge, another name).
  const differing: string[] = [];
  const others: string[] = [];
  let after: string | undefined;
  while (true) {
    const page = await cluster.manifest.list({
      limit: MIGRATE_PAGE_ENTRIES,
      ...(after !== undefined ? { after } : {}),
    });
    for (const { entry } of page.entries) {
      const ours = await source.get(entry.name);
      const migrated = ours && migratedEntry(ours.entry, host);
      // The same file with copies elsewhere is one --merge adds this directory's copies to.
      if (migrated === undefined || _sameFile(migrated, entry)) {
        if (migrated === undefined || !_sameEntry(migrated, entry)) others.push(entry.name);
      } else if (!_sameEntry(migrated, entry)) differing.push(entry.name);
    }
    if (!page.more || page.entries.length === 0) break;
    after = page.entries.at(-1)!.entry.name;
  }
  const shown = (names: string[]) =>
    names.slice(0, NAMES_SHOWN).map((n) => JSON.stringify(n)).join(", ") +
    (names.length > NAMES_SHOWN ? `, ... (${names.length})` : "");
  if (differing.length > 0) {
    throw new UsageError(
      `Cluster ${JSON.stringify(cluster.name)} in etcd already holds other versions of ` +
        `${shown(differing)}: remove them there (fts rm --etcd) or use another --cluster name`,
    );
  }
  if (others.length > 0 && !options.merge) {
    throw new UsageError(
      `Cluster ${JSON.stringify(cluster.name)} in etcd already holds files (${shown(others)}): ` +
        `use another --cluster name, or --merge to add this directory's files to them`,
    );
  }
  return { members };
}

/** Records each instance as a member, leaving a record already there (it may name a zone). */
async function _writeMembers(cluster: EtcdCluster, members: MemberRecord[]): Promise<void> {
  for (let i = 0; i < members.length; i += MIGRATE_BATCH_ENTRIES) {
    const batch = members.slice(i, i + MIGRATE_BATCH_ENTRIES);
    await Promise.all(batch.map(async (member) => {
      const key = cluster.keys.member(member.id);
      await cluster.etcd.txn(
        [{ key, target: "CREATE", result: "EQUAL", createRevision: 0 }],
        [{ put: { key, value: JSON.stringify(member) } }],
      );
    }));
  }
}

/** Writes every entry of the file manifest to etcd, in batches; counts what was there. */
async function _writeEntries(
  cluster: EtcdCluster,
  source: FileManifestStore,
  options: MigrateOptions,
): Promise<{ files: number; alreadyThere: number; parts: number; copies: number; bytes: number }> {
  const counts = { files: 0, alreadyThere: 0, parts: 0, copies: 0, bytes: 0 };
  let after: string | undefined;
  while (true) {
    const page = await source.list({
      limit: MIGRATE_PAGE_ENTRIES,
      ...(after !== undefined ? { after } : {}),
    });
    const entries = page.entries.map(({ entry }) => migratedEntry(entry, options.host));
    const jobs: (() => Promise<void>)[] = [];
    for (let i = 0; i < entries.length; i += MIGRATE_BATCH_ENTRIES) {
      const batch = entries.slice(i, i + MIGRATE_BATCH_ENTRIES);
      jobs.push(async () => {
        const { result } = await cluster.manifest.change(
          batch.map((e) => e.name),
          (current) => _batchPlan(batch, current, cluster.name, options.merge === true),
        );
        counts.alreadyThere += result;
        counts.files += batch.length;
      });
    }
    await runPool(jobs, MIGRATE_BATCHES_AT_ONCE);
    for (const entry of entries) {
      counts.parts += entry.parts.length;
      counts.copies += entry.parts.reduce((sum, part) => sum + part.replicas.length, 0);
      counts.bytes += entry.size;
    }
    if (!page.more || page.entries.length === 0) return counts;
    after = page.entries.at(-1)!.entry.name;
  }
}

/**
 * Puts the entries etcd lacks (with `merge`, adds this directory's copies to
 * an entry of the same file); returns how many were there already, so.
 */
function _batchPlan(
  batch: FileEntry[],
  current: ReadonlyMap<string, StoredEntry>,
  name: string,
  merge: boolean,
): { puts: FileEntry[]; result: number } {
  const puts: FileEntry[] = [];
  for (const entry of batch) {
    const there = current.get(entry.name);
    if (there === undefined) puts.push(entry);
    else if (merge && _sameFile(there.entry, entry)) {
      const merged = _withCopiesOf(there.entry, entry);
      if (!_sameEntry(merged, there.entry)) puts.push(merged);
    } else if (!_sameEntry(there.entry, entry)) {
      // Written by someone else since the check: never overwrite it.
      throw new UsageError(
        `Cluster ${JSON.stringify(name)} in etcd got another version of ` +
          `${
            JSON.stringify(entry.name)
          } while migrating: remove it there and run fts migrate again`,
      );
    }
  }
  return { puts, result: batch.length - puts.length };
}
