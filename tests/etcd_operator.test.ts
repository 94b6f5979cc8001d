/**
 * The operator's key in etcd mode: each host's data directory holds a key of
 * its own (it signs that host's healing copies), and only the first host's
 * is the operator's. Acting as the operator from another host with its own
 * key is refused, rather than making that host the owner of what it stores.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { EtcdProcess } from "../bench/etcd_process.ts";
import { missingTool } from "./missing_tool.ts";
import { freePortRange, type FtsProcess, runFts } from "./harness.ts";
import { startEtcdHost } from "./etcd_host.ts";

Deno.test({
  name: "etcd operator: preload and --operator from a second host need the first host's key",
  ignore: missingTool("etcd"),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "fts-etcd-operator-" });
    const etcd = await EtcdProcess.start({ addresses: ["127.0.0.1"] });
    const hosts: FtsProcess[] = [];
    const flags = ["--etcd", etcd.endpoints, "--cluster", "operator"];
    try {
      for (const i of [0, 1]) {
        hosts.push(
          await startEtcdHost({
            flags,
            host: `127.0.0.${i + 2}`,
            servers: 2,
            basePort: freePortRange(2),
            data: join(dir, `host${i}`),
            extra: ["--heal-after", "0"],
          }),
        );
      }
      const source = join(dir, "p.bin");
      await Deno.writeFile(source, new Uint8Array(5000).fill(7));
      const data = (i: number) => ["--data", join(dir, `host${i}`)];
      for (const command of [["preload", source], ["rm", "p.bin", "--operator"]]) {
        const refused = await runFts([...command, ...flags, ...data(1)]);
        assert.equal(refused.code, 2, refused.stderr);
        assert.match(refused.stderr, /is this host's own key, not the operator's of cluster/);
      }
      const listed = await runFts(["ls", "--json", ...flags]);
      assert.deepEqual(JSON.parse(listed.stdout), []);
      // With the first host's key copied in, the second host acts as the operator.
      await Deno.copyFile(
        join(dir, "host0", "operator_identity.json"),
        join(dir, "host1", "operator_identity.json"),
      );
      const preloaded = await runFts(["preload", source, ...flags, ...data(1)]);
      assert.equal(preloaded.code, 0, preloaded.stderr);
      const removed = await runFts(["rm", "p.bin", "--operator", ...flags, ...data(0)]);
      assert.equal(removed.code, 0, removed.stderr);
    } finally {
      for (const host of hosts) {
        host.kill("SIGTERM");
        await host.status;
      }
      await etcd.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
