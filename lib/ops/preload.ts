/**
 * Preload: split local files into parts and store each part directly in the
 * storage of its R instances in the data directory (the instances may be up or
 * down), then publish all the files in the manifest in one change.
 */
import { readIdentityOwner } from "../auth/identity.ts";
import { createHash } from "node:crypto";
import { checkSource } from "../base/source_file.ts";
import { type ClusterConfig, dataPaths, instanceIds } from "../state/config.ts";
import { contentIdOf, type FileEntry, OPERATOR_OWNER, type PartEntry } from "../state/manifest.ts";
import { PARTS_LOCK } from "../state/manifest_store.ts";
import { openLocker, openManifestStore } from "../state/open_manifest_store.ts";
import { freeUnreferencedParts, storesOnHost } from "../state/part_gc.ts";
import { requireManifestIfParts } from "../state/manifest_guard.ts";
import { placeReplicas } from "../state/placement.ts";
import { PartStore, type PartWriter } from "../state/store.ts";
import { Xxh128 } from "../hash/xxh128.ts";

const READ_CHUNK_BYTES = 1024 * 1024;

/**
 * Throws when `--replace` would replace a file the operator does not own: no
 * superuser. The operator's files are those preload stored (OPERATOR_OWNER)
 * and those uploaded with --operator (its key, `operatorKey`).
 */
function _refuseOthers(name: string, owner: string | undefined, operatorKey?: string): void {
  if (owner === undefined || owner === OPERATOR_OWNER || owner === operatorKey) return;
  throw new Error(
    `${JSON.stringify(name)} belongs to ${owner}, not the operator: preload --replace replaces ` +
      `only the operator's files (there is no superuser); its owner can rm or replace it`,
  );
}

export class NameTakenError extends Error {
  constructor(name: string, twice = false) {
    super(
      twice
        ? `The name ${
          JSON.stringify(name)
        } is given to two files: preload them one at a time, each with its own --as NAME (or pass --replace, and the last given wins)`
        : `A file named ${
          JSON.stringify(name)
        } is already in the cluster; pass --replace to overwrite it`,
    );
    this.name = "NameTakenError";
  }
}

export interface PreloadOptions {
  name: string;
  partSize: number;
  replace?: boolean;
  /** Called once the file's parts are all stored, before anything is published. */
  onStored?: (entry: FileEntry) => void | Promise<void>;
  /** Called after each part is stored on its replicas (awaited). */
  onPart?: (done: {
    index: number;
    parts: number;
    bytes: number;
    size: number;
    digest: string;
    replicas: string[];
  }) => void | Promise<void>;
}

async function _readRange(
  file: Deno.FsFile,
  start: number,
  length: number,
  buffer: Uint8Array,
  each: (chunk: Uint8Array) => Promise<void> | void,
  signal: AbortSignal | undefined,
): Promise<void> {
  await file.seek(start, Deno.SeekMode.Start);
  let done = 0;
  while (done < length) {
    signal?.throwIfAborted();
    const n = await file.read(buffer.subarray(0, Math.min(buffer.length, length - done)));
    if (n === null) throw new Error(`File ended early: changed while preloading?`);
    await each(buffer.subarray(0, n));
    done += n;
  }
}

/** Tries to publish before giving up when copies keep being freed under us. */
const MAX_PUBLISH_ATTEMPTS = 3;

/** Copies one part of `file` to every target that lacks it, verifying the bytes read. */
async function _storeCopies(
  file: Deno.FsFile,
  path: string,
  buffer: Uint8Array,
  part: { index: number; start: number; length: number; digest: string },
  targets: readonly string[],
  stores: Map<string, PartStore>,
  signal: AbortSignal | undefined,
): Promise<void> {
  const { index, start, length, digest } = part;
  const writers: PartWriter[] = [];
  try {
    for (const id of targets) {
      const store = stores.get(id)!;
      if ((await store.sizeOf(digest)) === length) continue;
      await store.init();
      writers.push(await store.beginWrite(digest, { hash: false }));
    }
    if (writers.length === 0) return;
    const hash = createHash("sha256");
    await _readRange(file, start, length, buffer, async (chunk) => {
      hash.update(chunk);
      for (const writer of writers) await writer.write(chunk);
    }, signal);
    if (hash.digest("hex") !== digest) {
      throw new Error(`${path} changed while it was being preloaded (part ${index})`);
    }
    for (const writer of writers) await writer.commit();
  } catch (error) {
    for (const writer of writers) await writer.abort();
    throw error;
  }
}

/** One file to preload: where it is and what it is called in the cluster. */
export interface PreloadJob extends PreloadOptions {
  path: string;
}

/** Stores `path` in the cluster under `options.name` and returns its manifest entry. */
export async function preloadFile(
  dir: string,
  config: ClusterConfig,
  path: string,
  options: PreloadOptions,
): Promise<FileEntry> {
  return (await preloadFiles(dir, config, [{ ...options, path }]))[0]!;
}

/**
 * Stores every job's file in the cluster, then publishes them all in one
 * manifest change; returns their entries in the order of `jobs`. Once
 * `signal` aborts, the part being stored is dropped (its temporary copies
 * removed) and nothing is published; the parts stored so far stay, for the
 * next preload to find, or for the unused-parts collection.
 */
export async function preloadFiles(
  dir: string,
  config: ClusterConfig,
  jobs: readonly PreloadJob[],
  signal?: AbortSignal,
): Promise<FileEntry[]> {
  // Publishing into a lost manifest's place would start a new one, and every
  // older file's parts would then count as unused.
  await requireManifestIfParts(dir, () => storesOnHost(dir));
  const store = openManifestStore(dir);
  const names = jobs.map((job) => job.name);
  const operatorKey = await readIdentityOwner(dataPaths(dir).operatorIdentity);
  // Fail before the work, and again in the change below (another preload may race us).
  for (const [index, job] of jobs.entries()) {
    const again = names.indexOf(job.name) !== index;
    if (!job.replace && again) throw new NameTakenError(job.name, true);
    const existing = await store.get(job.name);
    if (!job.replace && existing) throw new NameTakenError(job.name);
    _refuseOthers(job.name, existing?.entry.owner, operatorKey);
  }
  const paths = dataPaths(dir);
  const stores = new Map(
    instanceIds(config).map((id) => [id, new PartStore(paths.instanceDir(id))]),
  );
  const entries: FileEntry[] = [];
  for (const job of jobs) {
    const entry = await _storeFile(config, job, stores, signal);
    await job.onStored?.(entry);
    entries.push(entry);
  }
  // The last of several jobs with one name wins; the others' parts may be freed.
  const latest = new Map(entries.map((entry) => [entry.name, entry]));
  const superseded = entries.filter((entry) => latest.get(entry.name) !== entry);
  // Past this point it publishes, or fails, whole.
  signal?.throwIfAborted();
  // Publish under the parts lock only if every copy is still there: an rm or a
  // repair may have freed a copy of a shared part meanwhile. Put such copies
  // back and try again, so the manifest never points at a missing copy.
  for (let attempt = 1;; attempt++) {
    const outcome = await openLocker(dir).withLock(
      PARTS_LOCK,
      () =>
        store.change([...latest.keys()], async (current) => {
          const missing: { job: number; part: number }[] = [];
          for (const [job, entry] of entries.entries()) {
            if (latest.get(entry.name) !== entry) continue;
            if (current.has(entry.name) && !jobs[job]!.replace) {
              throw new NameTakenError(entry.name);
            }
            _refuseOthers(entry.name, current.get(entry.name)?.entry.owner, operatorKey);
            for (const [index, part] of entry.parts.entries()) {
              for (const id of part.replicas) {
                if ((await stores.get(id)!.sizeOf(part.digest)) !== part.size) {
                  missing.push({ job, part: index });
                }
              }
            }
          }
          const old = [...current.values()].map((found) => found.entry);
          if (missing.length > 0) return { result: { missing, old: [] } };
          return { puts: [...latest.values()], result: { missing, old } };
        }),
    );
    const { missing, old } = outcome.result;
    if (missing.length === 0) {
      // A replaced file's parts that nothing else uses free their storage.
      const freed = [...old, ...superseded].flatMap((entry) => entry.parts.map((p) => p.digest));
      if (freed.length > 0) await freeUnreferencedParts(dir, freed);
      return entries;
    }
    if (attempt >= MAX_PUBLISH_ATTEMPTS) {
      throw new Error(
        `Cannot publish ${JSON.stringify(entries[missing[0]!.job]!.name)}: copies of ${
          new Set(missing.map((m) => `${m.job}:${m.part}`)).size
        } parts kept disappearing (concurrent rm or repair?); run preload again`,
      );
    }
    for (const job of new Set(missing.map((m) => m.job))) {
      const parts = new Set(missing.filter((m) => m.job === job).map((m) => m.part));
      await _restoreCopies(jobs[job]!, entries[job]!, parts, stores);
    }
  }
}

/** Splits one file into parts and stores each on its replicas; returns its entry. */
async function _storeFile(
  config: ClusterConfig,
  job: PreloadJob,
  stores: Map<string, PartStore>,
  signal: AbortSignal | undefined,
): Promise<FileEntry> {
  const { name, partSize, path } = job;
  const file = await Deno.open(path, { read: true });
  try {
    const info = await file.stat();
    if (!info.isFile) throw new TypeError(`${path} is not a regular file`);
    const size = info.size;
    const stamp = { path, size, mtimeMs: info.mtime?.getTime(), ino: info.ino };
    const ids = instanceIds(config);
    const buffer = new Uint8Array(READ_CHUNK_BYTES);
    const parts: PartEntry[] = [];
    const fast = new Xxh128();
    const partCount = size === 0 ? 0 : Math.ceil(size / partSize);
    for (let index = 0; index < partCount; index++) {
      const start = index * partSize;
      const length = Math.min(partSize, size - start);
      // Pass 1: the digest decides where the part goes.
      const first = createHash("sha256");
      fast.reset();
      await _readRange(file, start, length, buffer, (chunk) => {
        first.update(chunk);
        fast.update(chunk);
      }, signal);
      const digest = first.digest("hex");
      const replicas = placeReplicas(digest, ids, config.replicas);
      // Pass 2: copy to every replica that lacks it (content-addressed: a copy
      // already there is the same bytes), hashing again to catch a changing file.
      await _storeCopies(
        file,
        path,
        buffer,
        { index, start, length, digest },
        replicas,
        stores,
        signal,
      );
      parts.push({ digest, xxh128: fast.digest(), size: length, replicas });
      await job.onPart?.({
        index,
        parts: partCount,
        bytes: start + length,
        size,
        digest,
        replicas,
      });
    }
    // The file as it was read, or nothing: a part rewritten, bytes appended since (source_file.ts).
    await checkSource(stamp);
    return {
      name,
      size,
      partSize,
      contentId: contentIdOf(size, parts),
      owner: OPERATOR_OWNER,
      created: new Date().toISOString(),
      parts,
    };
  } finally {
    file.close();
  }
}

/** Stores again the copies of `parts` of a preloaded file that went missing. */
async function _restoreCopies(
  job: PreloadJob,
  entry: FileEntry,
  parts: ReadonlySet<number>,
  stores: Map<string, PartStore>,
): Promise<void> {
  const file = await Deno.open(job.path, { read: true });
  try {
    const buffer = new Uint8Array(READ_CHUNK_BYTES);
    for (const index of parts) {
      const part = entry.parts[index]!;
      const start = index * entry.partSize;
      await _storeCopies(
        file,
        job.path,
        buffer,
        { index, start, length: part.size, digest: part.digest },
        part.replicas,
        stores,
        undefined,
      );
    }
  } finally {
    file.close();
  }
}
