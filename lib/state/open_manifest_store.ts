/**
 * Which stores back a data directory: the one place that picks the manifest
 * store and the locker, so that every caller works through their interfaces
 * (manifest_store.ts) and another implementation is a change here only.
 *
 * One store per directory per process: a long-running process keeps its
 * index and reads only what changed since its last look.
 */
import { dataPaths } from "./config.ts";
import { withFileLock } from "../base/lock.ts";
import { join } from "../base/paths.ts";
import { FileManifestStore } from "./file_manifest_store.ts";
import { refuseEtcdHost } from "./manifest_guard.ts";
import type { Locker, ManifestStore } from "./manifest_store.ts";

const _LOCK_NAME = /^[a-z][a-z0-9-]*$/;
const _stores = new Map<string, FileManifestStore>();

/**
 * The manifest store of the data directory `dir`. `serving`: an instance
 * serving entries opens it, and from then on this process takes the content
 * ids stored in entries as they are (ParseOptions.storedContentId).
 */
export function openManifestStore(dir: string, options: { serving?: boolean } = {}): ManifestStore {
  let store = _stores.get(dir);
  if (!store) {
    // A host of a cluster in etcd keeps no list of files in its directory.
    refuseEtcdHost(dir);
    _stores.set(dir, store = new FileManifestStore(dir));
  }
  if (options.serving) store.storedContentIds = true;
  return store;
}

/** The locker of the data directory `dir`: lock files in its run directory. */
export function openLocker(dir: string): Locker {
  return {
    async withLock<T>(name: string, fn: () => Promise<T>): Promise<T> {
      if (!_LOCK_NAME.test(name)) {
        throw new TypeError(
          `Lock name ${JSON.stringify(name)} is not lowercase letters and dashes`,
        );
      }
      const runDir = dataPaths(dir).runDir;
      await Deno.mkdir(runDir, { recursive: true });
      return await withFileLock(join(runDir, `${name}.lock`), fn);
    },
  };
}
