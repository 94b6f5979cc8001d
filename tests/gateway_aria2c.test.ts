/**
 * aria2c with the gateway's Metalink: two gateways for one cluster, on
 * different loopback addresses (aria2c limits connections per host name),
 * each listing the other in its Metalink document. aria2c pulls from both at
 * once, checking every piece against its SHA-256; one gateway is killed
 * mid-download and the download still completes and verifies. Then
 * `aria2c -V` on a copy with two damaged pieces re-fetches only those.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { assertSameFile, damageFile, newDest, startCluster } from "./harness.ts";
import { missingTool } from "./missing_tool.ts";
import { curlHead, run, startGateway, type TestGateway } from "./gateway_util.ts";

const MiB = 1024 * 1024;
const PART = 512 * 1024;

const ARIA2C = [
  "--follow-metalink=mem",
  "--max-tries=10",
  "--retry-wait=1",
  "--connect-timeout=2",
  "--timeout=5",
  "--console-log-level=warn",
  "--summary-interval=0",
  "--auto-file-renaming=false",
];

Deno.test({
  name:
    "gateway: aria2c from 2 gateways via Metalink, one killed mid-download; -V re-fetches only damaged pieces",
  ignore: missingTool("aria2c") || missingTool("curl"),
  async fn() {
    const size = 16 * MiB + 999;
    const cluster = await startCluster({
      servers: 3,
      replicas: 2,
      partSize: "512KiB",
      files: { "a.bin": size },
      // Slow instances (about 3 MiB/s in all), so the kill lands mid-download even on a busy machine.
      clusterArgs: ["--limit-rate", "1MiB"],
    });
    const gateways: TestGateway[] = [];
    try {
      gateways.push(await startGateway(["--data", cluster.dir], "127.0.0.1"));
      gateways.push(await startGateway(["--data", cluster.dir], "127.0.0.2"));
      const [first, second] = gateways as [TestGateway, TestGateway];
      const meta = await curlHead(`${first.url}/files/a.bin.meta4`);
      assert.ok(meta.body.includes(`<url priority="1">${first.url}/files/a.bin</url>`), meta.body);
      assert.ok(meta.body.includes(`<url priority="2">${second.url}/files/a.bin</url>`), meta.body);

      const dest = await newDest(cluster);
      const download = run("aria2c", [
        ...ARIA2C,
        "--split=8",
        "--min-split-size=1M",
        "--max-connection-per-server=4",
        "-d",
        dest,
        `${first.url}/files/a.bin.meta4`,
      ], { timeoutMs: 90_000 });
      // Both serve, then the second dies mid-download (once it has sent half a MiB).
      const deadline = Date.now() + 20_000;
      while (((await second.stats().catch(() => ({ bodyBytes: 0 }))).bodyBytes ?? 0) < MiB / 2) {
        if (Date.now() > deadline) throw new Error("aria2c never pulled from the second gateway");
        await new Promise((r) => setTimeout(r, 50));
      }
      const servedBeforeKill = (await first.stats()).bodyBytes! + (await second.stats()).bodyBytes!;
      second.process.kill("SIGKILL");
      await second.process.status;
      assert.ok(servedBeforeKill < size, `the download was over before the kill`);
      const got = await download;
      assert.equal(got.code, 0, got.stdout + got.stderr);
      await assertSameFile(join(dest, "a.bin"), join(cluster.work, "src", "a.bin"));
      assert.ok((await first.stats()).bodyBytes! > 0);

      // Two damaged pieces; aria2c -V checks every piece and fetches only those two again.
      await damageFile(join(dest, "a.bin"), 3 * PART + 100, 8);
      await damageFile(join(dest, "a.bin"), 20 * PART + 7, 8);
      const metaFile = join(dest, "a.bin.meta4");
      await Deno.writeTextFile(metaFile, (await curlHead(`${first.url}/files/a.bin.meta4`)).body);
      const before = (await first.stats()).bodyBytes!;
      const check = await run("aria2c", [
        ...ARIA2C,
        "-V",
        "--allow-overwrite=false",
        "-d",
        dest,
        `--metalink-file=${metaFile}`,
      ], { timeoutMs: 60_000 });
      assert.equal(check.code, 0, check.stdout + check.stderr);
      await assertSameFile(join(dest, "a.bin"), join(cluster.work, "src", "a.bin"));
      const refetched = (await first.stats()).bodyBytes! - before;
      assert.ok(
        refetched >= 2 * PART && refetched <= 3 * PART,
        `aria2c -V fetched ${refetched} bytes again for 2 damaged ${PART}-byte pieces`,
      );
    } finally {
      for (const gateway of gateways) await gateway.stop();
      await cluster.stop();
    }
  },
});
