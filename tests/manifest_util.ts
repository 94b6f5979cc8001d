/**
 * The manifest as tests like to see it, through the manifest store: the whole
 * of it as one object (`readManifest`), and a change made by mutating that
 * object (`updateManifest`), turned into the store's puts and deletes.
 */
import { join } from "node:path";
import { contentIdOf, type FileEntry, OPERATOR_OWNER } from "../lib/state/manifest.ts";
import { allEntries, type ManifestStore, walkWhole } from "../lib/state/manifest_store.ts";
import { openManifestStore } from "../lib/state/open_manifest_store.ts";

export interface Manifest {
  generation: number;
  files: Record<string, FileEntry>;
}

/** Every entry of the data directory's manifest, and its generation. */
export async function readManifest(dir: string): Promise<Manifest> {
  const store = openManifestStore(dir);
  return await walkWhole(async () => {
    const files: Record<string, FileEntry> = {};
    let generation = await store.revision();
    for await (const { entry, revision } of allEntries(store)) {
      files[entry.name] = entry;
      generation = Math.max(generation, revision);
    }
    return { generation, files };
  });
}

/**
 * Applies `change` to a copy of the whole manifest and commits what it
 * changed as one store change; returns what `change` returned.
 */
export async function updateManifest<T>(
  dir: string,
  change: (manifest: Manifest) => T | Promise<T>,
): Promise<T> {
  const store = openManifestStore(dir);
  const names = Object.keys((await readManifest(dir)).files);
  let added: string[] = [];
  for (let attempt = 0; attempt < 20; attempt++) {
    type Step = { retry: string[] } | { value: T };
    const outcome = await store.change<Step>([...names, ...added], async (current, generation) => {
      const before: Record<string, FileEntry> = {};
      for (const [name, found] of current) before[name] = found.entry;
      const manifest = { generation, files: structuredClone(before) };
      const result = await change(manifest);
      const touched = Object.keys(manifest.files).filter((name) => !current.has(name));
      if (touched.some((name) => !names.includes(name) && !added.includes(name))) {
        return { result: { retry: touched } };
      }
      return {
        puts: Object.values(manifest.files).filter((entry) =>
          JSON.stringify(entry) !== JSON.stringify(before[entry.name])
        ),
        deletes: Object.keys(before).filter((name) => !Object.hasOwn(manifest.files, name)),
        result: { value: result },
      };
    });
    const step = outcome.result;
    if ("value" in step) return step.value;
    added = [...added, ...step.retry];
  }
  throw new Error("updateManifest(): the names it changes kept changing");
}

/** The text of the file store's files (snapshot, then journal), to check nothing changed. */
export async function manifestFilesText(dir: string): Promise<string> {
  const read = (name: string) => Deno.readTextFile(join(dir, name)).catch(() => "");
  return `${await read("manifest.json")}\n--\n${await read("manifest.journal")}`;
}

/**
 * Rewrites the manifest synchronously, as a writer of the file store would:
 * the whole of it (snapshot and journal changes) through `edit`, into a new
 * one-line snapshot at the next generation with an empty journal. For tests
 * that must change the manifest from inside a synchronous callback.
 */
export function rewriteManifestSync(dir: string, edit: (manifest: Manifest) => void): void {
  const read = (name: string) => {
    try {
      return Deno.readTextFileSync(join(dir, name));
    } catch {
      return "";
    }
  };
  const snapshot = read("manifest.json");
  const manifest: Manifest = snapshot === "" ? { generation: 0, files: {} } : JSON.parse(snapshot);
  let document: string[] = [];
  for (const line of read("manifest.journal").split("\n")) {
    document.push(line);
    if (line !== "}}") continue;
    const change = JSON.parse(document.join("\n"));
    document = [];
    if (change.generation <= manifest.generation) continue;
    for (const name of change.deletes) delete manifest.files[name];
    Object.assign(manifest.files, change.puts);
    manifest.generation = change.generation;
  }
  edit(manifest);
  manifest.generation += 1;
  const temp = join(dir, "manifest.json.rewrite");
  Deno.writeTextFileSync(
    temp,
    JSON.stringify({ format: "fts-manifest", version: 1, ...manifest }) + "\n",
  );
  Deno.renameSync(temp, join(dir, "manifest.json"));
  Deno.writeTextFileSync(join(dir, "manifest.journal"), "");
}

/** A valid entry with one 4 KiB part whose digest depends on `seed`. */
export function testEntry(name: string, seed = 0): FileEntry {
  const parts = [{
    digest: (seed % 256).toString(16).padStart(2, "0").repeat(32),
    size: 4096,
    replicas: ["9001", "9002"],
  }];
  return {
    name,
    size: 4096,
    partSize: 4096,
    contentId: contentIdOf(4096, parts),
    owner: OPERATOR_OWNER,
    created: new Date(0).toISOString(),
    parts,
  };
}

/** Puts `entries` in one change; returns the revision it committed at. */
export async function putEntries(store: ManifestStore, ...entries: FileEntry[]): Promise<number> {
  const outcome = await store.change(entries.map((e) => e.name), () => ({
    puts: entries,
    result: undefined,
  }));
  return outcome.revision;
}
