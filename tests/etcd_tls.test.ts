/**
 * A cluster in etcd with TLS between fts processes: certificates from
 * `fts certs`, instances started by `fts cluster --etcd` with them, an upload
 * and a fetch through them byte-identical, and a client without the CA
 * refused with a message saying what to pass.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { EtcdProcess } from "../bench/etcd_process.ts";
import { missingTool } from "./missing_tool.ts";
import { freePortRange, type FtsProcess, runFts } from "./harness.ts";
import { startEtcdHost } from "./etcd_host.ts";

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
      cluster = await startEtcdHost({
        flags,
        host: "127.0.0.1",
        servers: 3,
        basePort: freePortRange(3),
        data: join(dir, "host"),
        extra: [
          "--part-size",
          "64KiB",
          "--tls-cert",
          join(ca, "host-127.0.0.1.pem"),
          "--tls-key",
          join(ca, "host-127.0.0.1.key"),
          "--tls-ca",
          join(ca, "ca.pem"),
        ],
      });
      const source = join(dir, "x.bin");
      await Deno.writeFile(source, crypto.getRandomValues(new Uint8Array(60_000)));
      const env = { FTS_TLS_CA: join(ca, "ca.pem") };
      const up = await runFts(["upload", source, ...flags, "--identity", join(dir, "id")], { env });
      assert.equal(up.code, 0, up.stderr);
      // The operator's preload over the network takes the CA as a flag, as its error says.
      const host = ["--data", join(dir, "host")];
      const caFlag = ["--tls-ca", join(ca, "ca.pem")];
      const pre = await runFts(["preload", source, "--as", "p.bin", ...flags, ...host, ...caFlag]);
      assert.equal(pre.code, 0, pre.stderr);
      const out = join(dir, "out");
      await Deno.mkdir(out);
      for (const name of ["x.bin", "p.bin"]) {
        const got = await runFts(["fetch", name, out, ...flags, ...caFlag]);
        assert.equal(got.code, 0, got.stderr);
        assert.deepEqual(await Deno.readFile(join(out, name)), await Deno.readFile(source));
      }
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

Deno.test({
  name: "etcd tls: etcd itself on https with a certificate from fts certs, reached with --etcd-ca",
  ignore: missingTool("etcd"),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "fts-etcd-https-" });
    const [client, peer, base] = [freePortRange(1), freePortRange(1), freePortRange(3)];
    let etcd: Deno.ChildProcess | undefined;
    let cluster: FtsProcess | undefined;
    try {
      const ca = join(dir, "ca");
      assert.equal((await runFts(["certs", "--ca", ca, "--host", "127.0.0.1"])).code, 0);
      etcd = new Deno.Command("etcd", {
        args: [
          "--name=tls",
          `--data-dir=${join(dir, "etcd")}`,
          `--listen-client-urls=https://127.0.0.1:${client}`,
          `--advertise-client-urls=https://127.0.0.1:${client}`,
          `--listen-peer-urls=http://127.0.0.1:${peer}`,
          `--initial-advertise-peer-urls=http://127.0.0.1:${peer}`,
          `--initial-cluster=tls=http://127.0.0.1:${peer}`,
          `--cert-file=${join(ca, "host-127.0.0.1.pem")}`,
          `--key-file=${join(ca, "host-127.0.0.1.key")}`,
        ],
        stdout: "null",
        stderr: "null",
      }).spawn();
      const url = `https://127.0.0.1:${client}`;
      const flags = ["--etcd", url, "--etcd-ca", join(ca, "ca.pem"), "--cluster", "https"];
      // Without the CA, one line saying etcd could not be reached, and why.
      const deadline = Date.now() + 20_000;
      let refused = await runFts(["ls", "--etcd", url]);
      while (!/certificate|UnknownIssuer/i.test(refused.stderr) && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 300));
        refused = await runFts(["ls", "--etcd", url]);
      }
      assert.equal(refused.code, 1);
      assert.match(refused.stderr, /etcd is unavailable: .*(certificate|UnknownIssuer)/i);
      assert.match(refused.stderr, /pass --etcd-ca FILE \(or FTS_ETCD_CA\) naming the CA/);
      cluster = await startEtcdHost({
        flags,
        host: "127.0.0.1",
        servers: 3,
        basePort: base,
        data: join(dir, "host"),
      });
      const source = join(dir, "x.bin");
      await Deno.writeFile(source, crypto.getRandomValues(new Uint8Array(50_000)));
      const up = await runFts(["upload", source, ...flags, "--identity", join(dir, "id")]);
      assert.equal(up.code, 0, up.stderr);
      const out = join(dir, "out");
      await Deno.mkdir(out);
      // The CA by the environment this time, as a shell profile would set it.
      const env = { FTS_ETCD_CA: join(ca, "ca.pem") };
      const got = await runFts(["fetch", "x.bin", out, "--etcd", url, "--cluster", "https"], {
        env,
      });
      assert.equal(got.code, 0, got.stderr);
      assert.deepEqual(await Deno.readFile(join(out, "x.bin")), await Deno.readFile(source));
    } finally {
      cluster?.kill("SIGTERM");
      await cluster?.status;
      try {
        etcd?.kill("SIGKILL");
      } catch { /* exited */ }
      await etcd?.status;
      await Deno.remove(dir, { recursive: true });
    }
  },
});
