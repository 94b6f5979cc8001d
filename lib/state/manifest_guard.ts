/**
 * Telling a lost manifest from an empty cluster. A data directory whose
 * `manifest.json` is gone (deleted, moved, a directory not mounted) reads as
 * "no files": every stored part would then count as unused, and repair or
 * healing would delete every copy. So a file manifest is created with the
 * config, and a directory with stored parts but no manifest is refused by
 * everything that would act on "no files", until the operator restores the
 * manifest or says the cluster is new (`fts repair --new-cluster`).
 *
 * And telling a host of a cluster in etcd from a single-host cluster: its
 * data directory holds part stores but no list of files (that is in etcd),
 * so read without `--etcd` it is a cluster whose every part is unused. Such
 * a directory is marked (`etcd_host.json`), and whatever would read its
 * files from the directory is refused with a line saying to pass --etcd.
 */
import { exists, writeFileAtomic } from "../base/fs_util.ts";
import { UsageError } from "../wire/errors.ts";
import { join } from "../base/paths.ts";
import { shellWord } from "../base/printable.ts";
import { layoutDocument, snapshotHeader } from "./manifest_layout.ts";
import { type PartStore } from "./store.ts";

/** Thrown when parts are stored but the manifest that says what they are is missing. */
export class ManifestMissingError extends Error {
  override name = "ManifestMissingError";
}

/** The path of the file manifest's snapshot in data directory `dir`. */
export function manifestPath(dir: string): string {
  return join(dir, "manifest.json");
}

/** The file marking `dir` as the data directory of a host of a cluster in etcd. */
export function etcdHostPath(dir: string): string {
  return join(dir, "etcd_host.json");
}

/** Marks `dir` as the data directory of a host of `cluster` in etcd at `endpoints`. */
export async function markEtcdHost(
  dir: string,
  cluster: string,
  endpoints: string[],
  /** The cluster's id in etcd (its settings' clusterId): which cluster of that name. */
  clusterId?: string,
): Promise<void> {
  const mark = { format: "fts-etcd-host", version: 1, cluster, endpoints, clusterId };
  await writeFileAtomic(etcdHostPath(dir), JSON.stringify(mark, null, 2) + "\n");
}

/**
 * The name of the cluster in etcd whose host `dir` was marked for
 * (markEtcdHost), or undefined when it is not marked or the mark says none.
 */
export function markedEtcdCluster(dir: string): string | undefined {
  return readEtcdHostMark(dir)?.cluster;
}

/** What markEtcdHost() wrote in `dir`, or undefined when it is not marked (or unreadable). */
export function readEtcdHostMark(
  dir: string,
): { cluster?: string; clusterId?: string; endpoints?: string[] } | undefined {
  try {
    const said = JSON.parse(Deno.readTextFileSync(etcdHostPath(dir)));
    if (typeof said !== "object" || said === null) return undefined;
    return {
      ...(typeof said.cluster === "string" ? { cluster: said.cluster } : {}),
      ...(typeof said.clusterId === "string" ? { clusterId: said.clusterId } : {}),
      ...(Array.isArray(said.endpoints) ? { endpoints: said.endpoints.map(String) } : {}),
    };
  } catch {
    return undefined;
  }
}

/**
 * Throws a UsageError when `dir` is the data directory of a host of a
 * cluster in etcd (markEtcdHost): its files are not listed there.
 */
export function refuseEtcdHost(dir: string): void {
  let text: string;
  try {
    text = Deno.readTextFileSync(etcdHostPath(dir));
  } catch (error) {
    if (error instanceof Deno.errors.NotFound || error instanceof Deno.errors.NotADirectory) return;
    throw error;
  }
  let said: { cluster?: unknown; endpoints?: unknown } = {};
  try {
    said = JSON.parse(text);
  } catch { /* damaged: still a host in etcd */ }
  const urls = Array.isArray(said.endpoints) ? said.endpoints.join(",") : "URLS";
  const name = typeof said.cluster === "string" ? ` --cluster ${said.cluster}` : "";
  throw new UsageError(
    `${dir} is the data directory of a host of a cluster in etcd, which lists its files: ` +
      `pass --etcd ${urls}${name} (or set FTS_ETCD); read alone, every part there would look unused`,
  );
}

/** Writes an empty manifest in `dir` unless one is there: for a new cluster. */
export async function createEmptyManifest(dir: string): Promise<void> {
  if (await exists(manifestPath(dir))) return;
  await writeFileAtomic(manifestPath(dir), layoutDocument(snapshotHeader(0), []));
}

/**
 * Throws ManifestMissingError when `dir` has no manifest but one of `stores`
 * (this host's instances, part_gc.ts storesOnHost) holds a part; a directory
 * with neither is a new cluster.
 */
export async function requireManifestIfParts(
  dir: string,
  stores: () => Promise<PartStore[]>,
): Promise<void> {
  refuseEtcdHost(dir);
  if (await exists(manifestPath(dir))) return;
  for (const store of await stores()) {
    const parts = await store.list();
    if (parts.length === 0) continue;
    throw new ManifestMissingError(
      `${manifestPath(dir)} is missing, but ${store.partsDir} holds ${parts.length} part(s): ` +
        `refusing to read the cluster as empty (that would delete every copy). Restore ` +
        `manifest.json, or if this really is a new cluster run ` +
        `"fts repair --new-cluster --data ${shellWord(dir)}"`,
    );
  }
}
