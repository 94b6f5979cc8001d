/**
 * Test helpers for repair, scrub and healing: where good copies of each part
 * really are (hashed on disk, not taken from the manifest), and what is left
 * in temp directories.
 */
import { join } from "node:path";
import { readManifestJson, sha256File, storedPartPath } from "./harness.ts";

export interface PartCensus {
  file: string;
  index: number;
  digest: string;
  /** Instances the manifest lists, sorted. */
  listed: string[];
  /** Instances among those asked whose stored copy hashes to the digest, sorted. */
  good: string[];
  /** Instances among those asked that store a copy that does not hash right. */
  bad: string[];
}

/** For every part of every file: which of `ports` hold a good (or a bad) copy. */
export async function censusOnDisk(dir: string, ports: number[]): Promise<PartCensus[]> {
  const manifest = await readManifestJson(dir);
  const out: PartCensus[] = [];
  for (const file of Object.values(manifest.files)) {
    for (const [index, part] of file.parts.entries()) {
      const good: string[] = [];
      const bad: string[] = [];
      for (const port of ports) {
        const path = storedPartPath(dir, String(port), part.digest);
        let hash: string;
        try {
          hash = await sha256File(path);
        } catch {
          continue;
        }
        (hash === part.digest ? good : bad).push(String(port));
      }
      out.push({
        file: file.name,
        index,
        digest: part.digest,
        listed: [...part.replicas].sort(),
        good: good.sort(),
        bad: bad.sort(),
      });
    }
  }
  return out;
}

/** Parts that do not have exactly `replicas` good copies among `ports`, for messages. */
export function offCount(census: PartCensus[], replicas: number): string[] {
  return census
    .filter((p) => p.good.length !== replicas)
    .map((p) => `part ${p.index} of ${p.file}: ${p.good.length} good copies (${p.good.join(",")})`);
}

/** Polls `check` until it returns true; throws with `what` and the last detail on timeout. */
export async function waitUntil(
  check: () => Promise<true | string>,
  timeoutMs: number,
  what: string,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = "";
  while (Date.now() < deadline) {
    const result = await check();
    if (result === true) return;
    last = result;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}: ${last}`);
}

/** Temp files left in instances' tmp directories and beside the manifest. */
export async function strayTemps(dir: string): Promise<string[]> {
  const found: string[] = [];
  for await (const instance of Deno.readDir(join(dir, "instances"))) {
    const tmp = join(dir, "instances", instance.name, "tmp");
    try {
      for await (const entry of Deno.readDir(tmp)) found.push(join(tmp, entry.name));
    } catch { /* no tmp directory */ }
  }
  for await (const entry of Deno.readDir(dir)) {
    if (entry.name.endsWith(".tmp")) found.push(join(dir, entry.name));
  }
  return found;
}

/** The names of every part file stored under `dir`, at any depth, sorted. */
export async function storedPartNames(dir: string): Promise<string[]> {
  const found: string[] = [];
  for await (const entry of Deno.readDir(dir)) {
    const path = join(dir, entry.name);
    if (entry.isDirectory) found.push(...await storedPartNames(path));
    else if (/^[0-9a-f]{64}$/.test(entry.name)) found.push(entry.name);
  }
  return found.sort();
}

/**
 * True when every part has exactly `replicas` good copies on `ports` and the
 * manifest lists just those; else what is still off, for waitUntil.
 */
export async function settledCopies(
  dir: string,
  ports: number[],
  replicas: number,
): Promise<true | string> {
  const census = await censusOnDisk(dir, ports);
  const off = offCount(census, replicas);
  if (off.length > 0) return off.join("; ");
  const unlisted = census.filter((p) => p.listed.join() !== p.good.join());
  return unlisted.length === 0 || `${unlisted.length} parts listed elsewhere than stored`;
}
