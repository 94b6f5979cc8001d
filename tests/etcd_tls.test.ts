/**
 * A cluster in etcd with TLS between fts processes: certificates from
 * `fts certs`, instances started by `fts cluster --etcd` with them, an upload
 * and a fetch through them byte-identical, and a client without the CA
 * refused with a message saying what to pass.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { EtcdProcess } from "./etcd_process.ts";
import { missingTool } from "./missing_tool.ts";
import { freePortRange, FtsProcess, runFts } from "./harness.ts";

Deno.test({
  name: "etcd tls: fts certs, cluster --etcd with --tls-cert, upload and fetch with the CA",
  ignore: missingTool("etcd"),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "fts-etcd-tls-" });
    const etcd = await EtcdProcess.start({ addresses: ["127.0.0.1"] });
    let cluster: FtsProcess | undefined;
    try {
      const ca = join(dir, "ca");
      const certs = await runFts(["certs", "--ca", ca, "--host", "127.0.0.1"]);
      assert.equal(certs.code, 0, certs.stderr);
      const flags = ["--etcd", etcd.endpoints, "--cluster", "tls"];
      cluster = new FtsProcess([
        "cluster",
        ...flags,
        "--host",
        "127.0.0.1",
        "--servers",
        "3",
        "--base-port",
        String(freePortRange(3)),
        "--replicas",
        "2",
        "--part-size",
        "64KiB",
        "--tls-cert",
        join(ca, "host-127.0.0.1.pem"),
        "--tls-key",
        join(ca, "host-127.0.0.1.key"),
        "--tls-ca",
        join(ca, "ca.pem"),
        "--data",
        join(dir, "host"),
        "--plain",
      ]);
      await cluster.waitFor(/ready/);
      const source = join(dir, "x.bin");
      await Deno.writeFile(source, crypto.getRandomValues(new Uint8Array(60_000)));
      const env = { FTS_TLS_CA: join(ca, "ca.pem") };
      const up = await runFts(["upload", source, ...flags, "--identity", join(dir, "id")], { env });
      assert.equal(up.code, 0, up.stderr);
      const out = join(dir, "out");
      await Deno.mkdir(out);
      const got = await runFts(["fetch", "x.bin", out, ...flags, "--tls-ca", join(ca, "ca.pem")]);
      assert.equal(got.code, 0, got.stderr);
      assert.deepEqual(await Deno.readFile(join(out, "x.bin")), await Deno.readFile(source));
      const plain = await runFts(["fetch", "x.bin", join(dir, "nowhere"), ...flags, "-q"]);
      assert.equal(plain.code, 1);
      assert.match(plain.stderr, /speaks TLS: pass the CA .* --tls-ca FILE/);
    } finally {
      cluster?.kill("SIGTERM");
      await cluster?.status;
      await etcd.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
