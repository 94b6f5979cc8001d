/** Helpers shared by the upload, rm and mv tests. */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  instanceStats,
  readManifestJson,
  sha256File,
  storedPartPath,
  type TestCluster,
} from "./harness.ts";

/** A user of the cluster: their identity file, and the environment that selects it. */
export interface TestUser {
  name: string;
  path: string;
  env: Record<string, string>;
}

export function testUser(cluster: TestCluster, name: string): TestUser {
  const path = join(cluster.work, "users", name, "identity.json");
  return { name, path, env: { FTS_IDENTITY: path } };
}

/** The user's owner string, from `fts whoami` (which creates the identity on first use). */
export async function whoami(cluster: TestCluster, user: TestUser): Promise<string> {
  const result = await cluster.fts(["whoami"], { env: user.env });
  assert.equal(result.code, 0, result.stderr);
  const owner = result.stdout.trim();
  assert.match(owner, /^ed25519:[A-Za-z0-9_-]{43}$/);
  return owner;
}

/** Every part copy stored under the data directory: digest to the instances holding it. */
export async function storedCopies(dir: string): Promise<Map<string, string[]>> {
  const copies = new Map<string, string[]>();
  for await (const instance of Deno.readDir(join(dir, "instances"))) {
    const partsDir = join(dir, "instances", instance.name, "parts");
    let fans: Deno.DirEntry[];
    try {
      fans = [...Deno.readDirSync(partsDir)];
    } catch {
      continue;
    }
    for (const fan of fans) {
      for (const entry of Deno.readDirSync(join(partsDir, fan.name))) {
        copies.set(entry.name, [...(copies.get(entry.name) ?? []), instance.name]);
      }
    }
  }
  return copies;
}

/** Sum of a counter over the instances that answer. */
export async function sumCounter(cluster: TestCluster, counter: string): Promise<number> {
  let total = 0;
  for (const port of cluster.ports) {
    try {
      total += (await instanceStats(`127.0.0.1:${port}`))[counter] ?? 0;
    } catch { /* down */ }
  }
  return total;
}

/** Polls until `check` holds; throws after `timeoutMs` (a hang guard, not a timing assertion). */
export async function waitUntil(
  what: string,
  check: () => Promise<boolean>,
  timeoutMs = 60_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`Timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/**
 * Asserts the manifest entry of `name` has `replicas` distinct replicas per
 * part, none on `excluded` instances, each a stored copy whose bytes hash to
 * the part's digest.
 */
export async function assertVerifiedCopies(
  cluster: TestCluster,
  name: string,
  replicas: number,
  excluded: ReadonlySet<string> = new Set(),
): Promise<void> {
  const entry = (await readManifestJson(cluster.dir)).files[name];
  assert.ok(entry, `${name} is not in the manifest`);
  for (const [index, part] of entry.parts.entries()) {
    assert.equal(new Set(part.replicas).size, replicas, `part ${index}: ${part.replicas}`);
    for (const id of part.replicas) {
      assert.ok(!excluded.has(id), `part ${index} names instance ${id}, which is down`);
      const path = storedPartPath(cluster.dir, id, part.digest);
      assert.equal(await sha256File(path), part.digest, `part ${index} on ${id}`);
    }
  }
}
