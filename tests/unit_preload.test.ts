import assert from "node:assert/strict";
import { join } from "node:path";
import { ensureConfig } from "../lib/state/config.ts";
import { readManifest } from "./manifest_util.ts";
import { preloadFile } from "../lib/ops/preload.ts";
import { PartStore } from "../lib/state/store.ts";
import { freePortRange, sha256File, storedPartPath, tempDir, writeRandomFile } from "./harness.ts";

const KiB = 1024;

async function _setup(work: string) {
  const dir = join(work, "data");
  const config = await ensureConfig(dir, {
    servers: 4,
    basePort: freePortRange(4),
    replicas: 2,
    partSize: 64 * KiB,
  });
  return { dir, config };
}

Deno.test("preloadFile() puts back a copy freed between storing and publishing", async () => {
  const work = await tempDir();
  try {
    const { dir, config } = await _setup(work);
    const source = join(work, "a.bin");
    await writeRandomFile(source, 5 * 64 * KiB + 100);
    let first: { digest: string; replicas: string[] } | undefined;
    let removed = false;
    const entry = await preloadFile(dir, config, source, {
      name: "a.bin",
      partSize: 64 * KiB,
      onPart: async ({ index, parts, digest, replicas }) => {
        if (index === 0) first = { digest, replicas };
        if (index !== parts - 1) return;
        // What a concurrent rm or repair may do to a copy of a shared part.
        removed = await new PartStore(join(dir, "instances", first!.replicas[0]!)).remove(
          first!.digest,
        );
      },
    });
    assert.ok(removed, "the test did not remove a copy");
    assert.deepEqual((await readManifest(dir)).files["a.bin"], entry);
    for (const part of entry.parts) {
      for (const id of part.replicas) {
        assert.equal(await sha256File(storedPartPath(dir, id, part.digest)), part.digest);
      }
    }
  } finally {
    await Deno.remove(work, { recursive: true });
  }
});

Deno.test("preloadFile() with replace frees the old content's unshared parts", async () => {
  const work = await tempDir();
  try {
    const { dir, config } = await _setup(work);
    const source = join(work, "b.bin");
    await writeRandomFile(source, 3 * 64 * KiB, 1);
    const old = await preloadFile(dir, config, source, { name: "b.bin", partSize: 64 * KiB });
    await writeRandomFile(source, 2 * 64 * KiB, 2);
    const fresh = await preloadFile(dir, config, source, {
      name: "b.bin",
      partSize: 64 * KiB,
      replace: true,
    });
    for (const part of old.parts) {
      for (const id of part.replicas) {
        await assert.rejects(Deno.stat(storedPartPath(dir, id, part.digest)));
      }
    }
    for (const part of fresh.parts) {
      for (const id of part.replicas) {
        assert.equal(await sha256File(storedPartPath(dir, id, part.digest)), part.digest);
      }
    }
  } finally {
    await Deno.remove(work, { recursive: true });
  }
});
