/**
 * The gateway with a file over 4 GiB: ranges at offsets past 2^32 (inside one
 * part and across parts) return exactly those bytes, and a whole download
 * through curl keeps the gateway's memory bounded by its part budget, not the
 * file. The big file is made cheaply: a few random 16 MiB parts are preloaded,
 * then a manifest entry reuses them ~290 times in a mixed order (the store
 * holds each part once), so nothing of 4.5 GiB is ever written to disk.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { residentMemory } from "../bench/measure.ts";
import { contentIdOf, type FileEntry } from "../lib/state/manifest.ts";
import { startCluster } from "./harness.ts";
import { updateManifest } from "./manifest_util.ts";
import { missingTool } from "./missing_tool.ts";
import { curlHead, startGateway } from "./gateway_util.ts";

const MiB = 1024 * 1024;
const PART = 16 * MiB;
/** Parts of the big file: 4.5 GiB and a bit, so offsets past 2^32 are well inside it. */
const BIG_PARTS = 290;
const LAST_PART = 5 * MiB + 321;
const BIG_SIZE = (BIG_PARTS - 1) * PART + LAST_PART;
/** The gateway's part budget in this test; RSS must stay near it, far below the file. */
const BUDGET = "64MiB";
/** Most the gateway's resident memory may grow during the download. */
const MAX_RSS_GROWTH_BYTES = 320 * MiB;

Deno.test({
  name:
    "gateway: a 4.5 GiB file: ranges past 4 GiB exact; a whole download keeps RSS bounded (budget 64 MiB)",
  ignore: missingTool("curl"),
  async fn() {
    // Seed: three full random parts and a short last one.
    const cluster = await startCluster({
      servers: 2,
      replicas: 1,
      partSize: "16MiB",
      files: { "seed.bin": 3 * PART + LAST_PART },
    });
    let gateway;
    try {
      const seed = await Deno.readFile(join(cluster.work, "src", "seed.bin"));
      /** Which seed part each big part is: non-periodic, so an offset slip shows. */
      const seedPartOf = (i: number) => i === BIG_PARTS - 1 ? 3 : (i * i + (i >> 3)) % 3;
      await updateManifest(cluster.dir, (manifest) => {
        const from = manifest.files["seed.bin"]!;
        const parts = Array.from({ length: BIG_PARTS }, (_, i) => from.parts[seedPartOf(i)]!);
        const big: FileEntry = {
          ...from,
          name: "big.bin",
          size: BIG_SIZE,
          parts,
          contentId: contentIdOf(BIG_SIZE, parts),
        };
        manifest.files["big.bin"] = big;
      });
      const expected = (start: number, end: number): Uint8Array => {
        const out = new Uint8Array(end - start);
        for (let at = start; at < end;) {
          const i = Math.floor(at / PART);
          const within = at - i * PART;
          const size = i === BIG_PARTS - 1 ? LAST_PART : PART;
          const take = Math.min(end - at, size - within);
          const base = seedPartOf(i) * PART + within;
          out.set(seed.subarray(base, base + take), at - start);
          at += take;
        }
        return out;
      };

      gateway = await startGateway(["--data", cluster.dir, "--memory", BUDGET, "--quiet"]);
      const url = `${gateway.url}/files/big.bin`;
      const head = await curlHead(url, ["-I"]);
      assert.equal(head.headers.get("content-length"), String(BIG_SIZE));
      const GiB4 = 2 ** 32;
      const ranges: [number, number][] = [
        [GiB4 + 5, GiB4 + 1000], // inside one part, past 2^32
        [GiB4 - 100, GiB4 + 100], // across 2^32 (not a part boundary: parts are 16 MiB)
        [257 * PART - 777, 259 * PART + 3], // across three parts past 2^32
        [BIG_SIZE - LAST_PART - 10, BIG_SIZE], // into the short last part, to the end
      ];
      for (const [start, end] of ranges) {
        const out = join(cluster.work, "range");
        const got = await curlHead(url, ["-r", `${start}-${end - 1}`, "-o", out]);
        assert.equal(got.status, 206);
        assert.equal(got.headers.get("content-range"), `bytes ${start}-${end - 1}/${BIG_SIZE}`);
        assert.deepEqual(await Deno.readFile(out), expected(start, end), `${start}-${end}`);
      }
      const suffix = await curlHead(url, [
        "-H",
        "Range: bytes=-1000",
        "-o",
        join(cluster.work, "s"),
      ]);
      assert.equal(
        suffix.headers.get("content-range"),
        `bytes ${BIG_SIZE - 1000}-${BIG_SIZE - 1}/${BIG_SIZE}`,
      );
      assert.deepEqual(
        await Deno.readFile(join(cluster.work, "s")),
        expected(BIG_SIZE - 1000, BIG_SIZE),
      );

      // The whole file through curl, hashed as it streams; the gateway's RSS sampled meanwhile.
      const idle = residentMemory(gateway.process.pid)!.rssBytes;
      let peak = idle;
      const curl = new Deno.Command("curl", {
        args: ["-sS", "-f", url],
        stdout: "piped",
        stderr: "piped",
      })
        .spawn();
      const sampler = setInterval(() => {
        const now = residentMemory(gateway!.process.pid)?.rssBytes ?? 0;
        peak = Math.max(peak, now);
      }, 100);
      const hash = createHash("sha256");
      let received = 0;
      const started = performance.now();
      try {
        for await (const chunk of curl.stdout) {
          hash.update(chunk);
          received += chunk.length;
        }
      } finally {
        clearInterval(sampler);
      }
      const status = await curl.status;
      await curl.stderr.cancel();
      const seconds = (performance.now() - started) / 1000;
      assert.equal(status.code, 0);
      assert.equal(received, BIG_SIZE);
      const want = createHash("sha256");
      for (let i = 0; i < BIG_PARTS; i++) {
        const p = seedPartOf(i);
        want.update(seed.subarray(p * PART, p * PART + (i === BIG_PARTS - 1 ? LAST_PART : PART)));
      }
      assert.equal(hash.digest("hex"), want.digest("hex"));
      console.log(
        `big download: ${(BIG_SIZE / 2 ** 30).toFixed(2)} GiB in ${seconds.toFixed(1)} s (${
          (BIG_SIZE / MiB / seconds).toFixed(0)
        } MiB/s); gateway RSS ${(idle / MiB).toFixed(0)} MiB idle, ${
          (peak / MiB).toFixed(0)
        } MiB peak`,
      );
      assert.ok(peak - idle < MAX_RSS_GROWTH_BYTES, `RSS grew ${(peak - idle) / MiB} MiB`);
    } finally {
      await gateway?.stop();
      await cluster.stop();
    }
  },
});
