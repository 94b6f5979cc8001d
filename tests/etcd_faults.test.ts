/**
 * etcd failing under a cluster that keeps its state there: a 3-member etcd
 * on loopback addresses, one host of fts instances. One member killed
 * mid-upload: the upload succeeds. Two killed: known files still fetch and
 * list, a change fails within seconds naming the endpoints and publishes
 * nothing; members back: changes work again with no restart of fts. etcd
 * down altogether: an instance asked for the list or an entry says so. And a
 * signed request replayed to another host's instance is refused: the nonces
 * are in etcd.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { EtcdProcess } from "../bench/etcd_process.ts";
import { missingTool } from "./missing_tool.ts";
import { freePortRange, type FtsProcess, runFts } from "./harness.ts";
import { startEtcdHost } from "./etcd_host.ts";
import { storedPartNames } from "./replicas.ts";
import { loadOrCreateIdentity } from "../lib/auth/identity.ts";
import { signRequest } from "../lib/auth/signed_request.ts";
import { bindRequest } from "../lib/client/signed_client.ts";
import { Peer } from "../lib/client/peer.ts";
import { ProtocolError } from "../lib/wire/errors.ts";

/** How long a change may take to fail once etcd has lost its quorum. */
const NO_QUORUM_FAIL_MS = 20_000;

async function _randomFile(path: string, bytes: number): Promise<void> {
  const data = new Uint8Array(bytes);
  for (let i = 0; i < bytes; i += 65536) crypto.getRandomValues(data.subarray(i, i + 65536));
  await Deno.writeFile(path, data);
}

async function _same(a: string, b: string): Promise<boolean> {
  const [x, y] = await Promise.all([Deno.readFile(a), Deno.readFile(b)]);
  return x.length === y.length && x.every((byte, i) => byte === y[i]);
}

Deno.test({
  name: "etcd faults: 1 of 3 members killed mid-upload; 2 killed: reads work, changes fail fast",
  ignore: missingTool("etcd"),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "fts-etcd-faults-" });
    const etcd = await EtcdProcess.start({
      members: 3,
      addresses: ["127.0.0.1", "127.0.0.2", "127.0.0.3"],
    });
    let cluster: FtsProcess | undefined;
    try {
      const flags = ["--etcd", etcd.endpoints, "--cluster", "faults"];
      cluster = await startEtcdHost({
        flags,
        host: "127.0.0.1",
        servers: 4,
        basePort: freePortRange(4),
        data: join(dir, "host"),
        extra: ["--part-size", "64KiB", "--heal-after", "0"],
      });
      const id = ["--identity", join(dir, "me.id")];

      // One member dies while an upload is under way: the upload succeeds.
      const big = join(dir, "big.bin");
      await _randomFile(big, 2 * 1024 * 1024);
      const upload = runFts(["upload", big, ...flags, ...id, "--limit-rate", "1MiB", "-q"]);
      await new Promise((resolve) => setTimeout(resolve, 700));
      await etcd.kill(0);
      const uploaded = await upload;
      assert.equal(uploaded.code, 0, uploaded.stderr);

      // Two dead: no quorum. Known files still list and fetch byte-identical.
      await etcd.kill(1);
      const listed = await runFts(["ls", ...flags]);
      assert.equal(listed.code, 0, listed.stderr);
      assert.match(listed.stdout, /big\.bin/);
      const out = join(dir, "out");
      await Deno.mkdir(out);
      const fetched = await runFts(["fetch", "big.bin", out, ...flags, "-q"]);
      assert.equal(fetched.code, 0, fetched.stderr);
      assert.ok(await _same(big, join(out, "big.bin")));
      // Every instance still answers hello at once: status never takes them for dead.
      for (let i = 0; i < 5; i++) {
        const status = await runFts(["status", ...flags]);
        assert.equal(status.code, 0, status.stderr);
        assert.match(status.stdout, /instances: 4\/4 up/);
      }

      // A change fails within seconds, saying etcd is the trouble, before it sends a byte.
      const small = join(dir, "small.bin");
      await _randomFile(small, 100_000);
      const partsBefore = await storedPartNames(join(dir, "host"));
      const started = Date.now();
      const refused = await runFts(["upload", small, ...flags, ...id, "-q"]);
      assert.notEqual(refused.code, 0);
      assert.ok(Date.now() - started < NO_QUORUM_FAIL_MS, `took ${Date.now() - started} ms`);
      assert.match(refused.stderr, /etcd is unavailable/);
      assert.match(refused.stderr, /127\.0\.0\.3/);
      assert.deepEqual(await storedPartNames(join(dir, "host")), partsBefore);

      // Members back: the same upload works with no restart of any fts process.
      await etcd.restart(0);
      await etcd.restart(1);
      const listedAgain = await runFts(["ls", "--json", ...flags]);
      assert.deepEqual(
        (JSON.parse(listedAgain.stdout) as { name: string }[]).map((f) => f.name),
        ["big.bin"],
      );
      const accepted = await runFts(["upload", small, ...flags, ...id, "-q"]);
      assert.equal(accepted.code, 0, accepted.stderr);
      const fetchedSmall = await runFts(["fetch", "small.bin", out, ...flags, "-q"]);
      assert.equal(fetchedSmall.code, 0, fetchedSmall.stderr);
      assert.ok(await _same(small, join(out, "small.bin")));
    } finally {
      cluster?.kill("SIGTERM");
      await cluster?.status;
      await etcd.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "etcd down: an instance asked for the list or a file says etcd is unavailable",
  ignore: missingTool("etcd"),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "fts-etcd-down-" });
    const etcd = await EtcdProcess.start({ addresses: ["127.0.0.1"] });
    let cluster: FtsProcess | undefined;
    try {
      const flags = ["--etcd", etcd.endpoints, "--cluster", "down"];
      const basePort = freePortRange(2);
      cluster = await startEtcdHost({
        flags,
        host: "127.0.0.1",
        servers: 2,
        basePort,
        data: join(dir, "host"),
        extra: ["--heal-after", "0", "--replicas", "1"],
      });
      await etcd.kill(0);
      // Not "Internal server error": the instance names what is wrong, where.
      const server = ["--server", `127.0.0.1:${basePort}`];
      for (
        const args of [["ls", ...server], [
          "fetch",
          "nosuch.bin",
          dir,
          ...server,
          "--timeout",
          "5s",
        ]]
      ) {
        const result = await runFts(args);
        assert.equal(result.code, 1, `${args.join(" ")}: ${result.stderr}`);
        assert.match(result.stderr, /etcd is unavailable: none of http:\/\/127\.0\.0\.1/);
      }
    } finally {
      cluster?.kill("SIGTERM");
      await cluster?.status;
      await etcd.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "etcd replay: a signed rename replayed to an instance on another host is refused",
  ignore: missingTool("etcd"),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "fts-etcd-replay-" });
    const etcd = await EtcdProcess.start({ addresses: ["127.0.0.1"] });
    const clusters: FtsProcess[] = [];
    try {
      const flags = ["--etcd", etcd.endpoints, "--cluster", "replay"];
      const basePort = freePortRange(2);
      // Two hosts: the same ports on two loopback addresses, each its own data directory.
      for (const host of ["127.0.0.1", "127.0.0.2"]) {
        clusters.push(
          await startEtcdHost({
            flags,
            host,
            servers: 2,
            basePort,
            data: join(dir, host),
            extra: ["--part-size", "64KiB"],
          }),
        );
      }
      const idPath = join(dir, "me.id");
      const source = join(dir, "a.bin");
      await _randomFile(source, 50_000);
      const up = await runFts(["upload", source, ...flags, "--identity", idPath]);
      assert.equal(up.code, 0, up.stderr);

      const identity = await loadOrCreateIdentity(idPath);
      const first = await Peer.connect(`127.0.0.1:${basePort}`);
      const signed = await signRequest(
        identity,
        await bindRequest(first, { op: "file.rename", name: "a.bin", to: "b.bin" }),
      );
      try {
        const reply = await first.requestSigned(signed);
        assert.equal(reply.op, "renamed");
      } finally {
        first.close();
      }
      // Back as it was, so that only the spent nonce can refuse the replay
      // (a key that does not own the file now is refused before that).
      const back = await runFts(["mv", "b.bin", "a.bin", ...flags, "--identity", idPath]);
      assert.equal(back.code, 0, back.stderr);
      const second = await Peer.connect(`127.0.0.2:${basePort}`);
      try {
        await assert.rejects(
          second.requestSigned({ ...signed, to: "b.bin" }),
          (error: Error) => {
            assert.ok(error instanceof ProtocolError);
            assert.equal(error.code, "UNAUTHORIZED");
            assert.match(error.message, /already used \(replay refused\)/);
            return true;
          },
        );
      } finally {
        second.close();
      }
    } finally {
      for (const cluster of clusters) cluster.kill("SIGTERM");
      await Promise.all(clusters.map((cluster) => cluster.status));
      await etcd.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
