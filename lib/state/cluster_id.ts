/**
 * The cluster's identity: a random id made when a single-host cluster's data
 * directory is created, kept in `DIR/cluster_id`. Signed requests name it,
 * so a request signed for one cluster means nothing to another (even one
 * where the same key owns a file of that name). A data directory made before
 * the id existed gets one on first use, under the config lock so that every
 * instance reads the same.
 */
import { withFileLock } from "../base/lock.ts";
import { writeFileAtomic } from "../base/fs_util.ts";
import { join } from "../base/paths.ts";

/** What a cluster id looks like (a UUID here; etcd's settings hold one too). */
export const CLUSTER_ID_PATTERN = /^[0-9A-Za-z-]{8,64}$/;

/** The path of the cluster id file of data directory `dir`. */
export function clusterIdPath(dir: string): string {
  return join(dir, "cluster_id");
}

/** The cluster id of data directory `dir`, made (and recorded) if it has none yet. */
export async function loadOrCreateClusterId(dir: string): Promise<string> {
  const found = await _read(dir);
  if (found !== undefined) return found;
  await Deno.mkdir(dir, { recursive: true });
  // The config lock: the same one creating the config takes.
  return await withFileLock(join(dir, "manifest.lock"), async () => {
    return await _read(dir) ?? await createClusterIdLocked(dir);
  });
}

/** Records a new cluster id in `dir`; the caller holds the config lock and found none. */
export async function createClusterIdLocked(dir: string): Promise<string> {
  const id = crypto.randomUUID();
  await writeFileAtomic(clusterIdPath(dir), `${id}\n`);
  return id;
}

async function _read(dir: string): Promise<string | undefined> {
  let text: string;
  try {
    text = await Deno.readTextFile(clusterIdPath(dir));
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
  const id = text.trim();
  if (!CLUSTER_ID_PATTERN.test(id)) {
    throw new SyntaxError(`${clusterIdPath(dir)} holds no cluster id: ${JSON.stringify(id)}`);
  }
  return id;
}
