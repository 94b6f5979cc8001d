/**
 * Preload: split a local file into parts and store each part directly in the
 * storage of its R instances in the data directory (the instances may be up or
 * down), then publish the file in the manifest in one step.
 */
import { createHash } from "node:crypto";
import { type ClusterConfig, dataPaths, instanceIds } from "../state/config.ts";
import {
  contentIdOf,
  type FileEntry,
  OPERATOR_OWNER,
  type PartEntry,
  updateManifest,
} from "../state/manifest.ts";
import { freeUnreferencedParts } from "../state/part_gc.ts";
import { placeReplicas } from "../state/placement.ts";
import { PartStore, type PartWriter } from "../state/store.ts";
import { Xxh128 } from "../hash/xxh128.ts";

const READ_CHUNK_BYTES = 1024 * 1024;

export class NameTakenError extends Error {
  constructor(name: string) {
    super(
      `A file named ${
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
): Promise<void> {
  await file.seek(start, Deno.SeekMode.Start);
  let done = 0;
  while (done < length) {
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
    });
    if (hash.digest("hex") !== digest) {
      throw new Error(`${path} changed while it was being preloaded (part ${index})`);
    }
    for (const writer of writers) await writer.commit();
  } catch (error) {
    for (const writer of writers) await writer.abort();
    throw error;
  }
}

/** Stores `path` in the cluster under `options.name` and returns its manifest entry. */
export async function preloadFile(
  dir: string,
  config: ClusterConfig,
  path: string,
  options: PreloadOptions,
): Promise<FileEntry> {
  const { name, partSize } = options;
  const file = await Deno.open(path, { read: true });
  try {
    const info = await file.stat();
    if (!info.isFile) throw new TypeError(`${path} is not a regular file`);
    // Fail before the work, and again under the lock below (another preload may race us).
    if (!options.replace) {
      await updateManifest(dir, (manifest) => {
        if (Object.hasOwn(manifest.files, name)) throw new NameTakenError(name);
      });
    }
    const size = info.size;
    const ids = instanceIds(config);
    const paths = dataPaths(dir);
    const stores = new Map(ids.map((id) => [id, new PartStore(paths.instanceDir(id))]));
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
      });
      const digest = first.digest("hex");
      const replicas = placeReplicas(digest, ids, config.replicas);
      // Pass 2: copy to every replica that lacks it (content-addressed: a copy
      // already there is the same bytes), hashing again to catch a changing file.
      await _storeCopies(file, path, buffer, { index, start, length, digest }, replicas, stores);
      parts.push({ digest, xxh128: fast.digest(), size: length, replicas });
      await options.onPart?.({
        index,
        parts: partCount,
        bytes: start + length,
        size,
        digest,
        replicas,
      });
    }
    const entry: FileEntry = {
      name,
      size,
      partSize,
      contentId: contentIdOf(size, parts),
      owner: OPERATOR_OWNER,
      created: new Date().toISOString(),
      parts,
    };
    // Publish under the lock only if every copy is still there: an rm or a repair
    // may have freed a copy of a shared part meanwhile. Put such copies back and
    // try again, so the manifest never points at a missing copy.
    for (let attempt = 1;; attempt++) {
      const outcome = await updateManifest(dir, async (manifest) => {
        const old = Object.hasOwn(manifest.files, name) ? manifest.files[name] : undefined;
        if (old && !options.replace) throw new NameTakenError(name);
        const missing: number[] = [];
        for (const [index, part] of parts.entries()) {
          for (const id of part.replicas) {
            if ((await stores.get(id)!.sizeOf(part.digest)) !== part.size) missing.push(index);
          }
        }
        if (missing.length === 0) manifest.files[name] = entry;
        return { missing, old };
      });
      if (outcome.missing.length === 0) {
        // A replaced file's parts that nothing else uses free their storage.
        if (outcome.old) await freeUnreferencedParts(dir, outcome.old.parts.map((p) => p.digest));
        return entry;
      }
      if (attempt >= MAX_PUBLISH_ATTEMPTS) {
        throw new Error(
          `Cannot publish ${JSON.stringify(name)}: copies of ${outcome.missing.length} parts ` +
            `kept disappearing (concurrent rm or repair?); run preload again`,
        );
      }
      for (const index of new Set(outcome.missing)) {
        const part = parts[index]!;
        const start = index * partSize;
        await _storeCopies(
          file,
          path,
          buffer,
          { index, start, length: part.size, digest: part.digest },
          part.replicas,
          stores,
        );
      }
    }
  } finally {
    file.close();
  }
}
