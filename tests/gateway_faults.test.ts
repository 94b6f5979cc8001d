/**
 * The gateway under faults, with curl as the client: a stored copy with
 * flipped bytes is never sent and is reported (and quarantined); an instance
 * killed mid-response is failed over inside the gateway; when no replica is
 * left for a part the connection is aborted and curl exits non-zero; a client
 * that stops reading is cut off at the write deadline and its parts freed;
 * with every instance down, the index is 503; slow readers from one address
 * cannot take all of the memory for parts; HTTPS with the cluster's
 * certificate.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  assertSameFile,
  damageFile,
  forgePart,
  newDest,
  readManifestJson,
  startCluster,
  storedPartPath,
} from "./harness.ts";
import { missingTool } from "./missing_tool.ts";
import { curlHead, run, startGateway } from "./gateway_util.ts";
import { makeTestCertificates } from "./tls_certs.ts";

const MiB = 1024 * 1024;
const KiB = 1024;

async function _waitFor(what: string, check: () => Promise<boolean>, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** SIGKILLs an instance straight from here: `fts kill` would first start a process of its own. */
async function _killInstance(dir: string, port: number): Promise<void> {
  const pid = Number((await Deno.readTextFile(join(dir, "run", `${port}.pid`))).trim());
  Deno.kill(pid, "SIGKILL");
}

async function _exists(path: string): Promise<boolean> {
  return await Deno.stat(path).then(() => true, () => false);
}

Deno.test({
  name:
    "gateway: corruption: copies with flipped bytes are never sent, reported and quarantined (R=2)",
  ignore: missingTool("curl"),
  async fn() {
    const size = 2 * MiB + 1234;
    const cluster = await startCluster({ servers: 3, replicas: 2, files: { "a.bin": size } });
    const gateway = await startGateway(["--data", cluster.dir]);
    try {
      const source = join(cluster.work, "src", "a.bin");
      const original = await Deno.readFile(source);
      const entry = (await readManifestJson(cluster.dir)).files["a.bin"]!;
      // The copy each part is read from first (replicas spread by part index), damaged.
      const bad = entry.parts.map((part, index) => {
        const id = part.replicas[index % part.replicas.length]!;
        return { id, digest: part.digest, path: storedPartPath(cluster.dir, id, part.digest) };
      });
      for (const copy of bad) await damageFile(copy.path, 1000, 16);
      const partSize = entry.partSize;
      // A range inside a damaged part: the bytes come from the good copy.
      const range = await curlHead(`${gateway.url}/files/a.bin`, [
        "-r",
        `${partSize + 990}-${partSize + 1030}`,
        "-o",
        join(cluster.work, "range"),
      ]);
      assert.equal(range.status, 206);
      assert.deepEqual(
        await Deno.readFile(join(cluster.work, "range")),
        original.subarray(partSize + 990, partSize + 1031),
      );
      const dest = await newDest(cluster);
      const got = await run("curl", ["-sS", "-f", "-O", `${gateway.url}/files/a.bin`], {
        cwd: dest,
      });
      assert.equal(got.code, 0, got.stderr);
      await assertSameFile(join(dest, "a.bin"), source);
      assert.ok((await gateway.stats()).digestMismatches! >= 1);
      // Every damaged copy the gateway ran into is in quarantine now.
      await _waitFor("the damaged copies to be quarantined", async () => {
        const quarantined = await Promise.all(
          bad.map((c) => _exists(join(cluster.dir, "instances", c.id, "quarantine", c.digest))),
        );
        return quarantined.filter(Boolean).length >= 1 &&
          quarantined.every((q, i) => q || !gateway.process.stdout.includes(`part ${i} `));
      });
      assert.match(gateway.process.stdout, /digest mismatch: part \d+ from instance \d+; reported/);
    } finally {
      await gateway.stop();
      await cluster.stop();
    }
  },
});

Deno.test({
  name:
    "gateway: parts are checked with XXH3-128, and with SHA-256 alone under --verify (forged copies)",
  ignore: missingTool("curl"),
  async fn() {
    const part = 256 * KiB;
    // Every copy of part 1 swapped for other bytes, and the entry's XXH3-128 made to match them,
    // before the cluster starts: its own gateway (--http 0 --verify) must refuse them too. One
    // file for it (g.bin), as a refused copy is reported, and then quarantined.
    const forged = new Uint8Array(part).fill(0xa5);
    const cluster = await startCluster({
      servers: 3,
      replicas: 2,
      partSize: "256KiB",
      files: { "f.bin": 3 * part, "g.bin": 3 * part },
      clusterArgs: ["--http", "0", "--verify"],
      beforeStart: async (dir) => {
        for (const name of ["f.bin", "g.bin"]) await forgePart(dir, name, 1, forged);
      },
    });
    const own = (await cluster.supervisor.waitFor(/HTTP gateway at (http:\/\/[^/ ]+)\//))[1]!;
    const trusting = await startGateway(["--data", cluster.dir]);
    const verifying = await startGateway(["--data", cluster.dir, "--verify"]);
    try {
      const dest = await newDest(cluster);
      const sent = await run("curl", ["-sS", "-f", "-o", "t.bin", `${trusting.url}/files/f.bin`], {
        cwd: dest,
      });
      assert.equal(sent.code, 0, sent.stderr);
      // XXH3-128 finds damage, not forgery (README, Limits).
      assert.deepEqual((await Deno.readFile(join(dest, "t.bin"))).subarray(part, 2 * part), forged);
      const refused = await run("curl", [
        "-sS",
        "-f",
        "-o",
        "v.bin",
        `${verifying.url}/files/f.bin`,
      ], {
        cwd: dest,
      });
      assert.notEqual(refused.code, 0, "curl got the forged part through --verify");
      assert.ok((await verifying.stats()).digestMismatches! >= 1);
      const ownRefused = await run("curl", ["-sS", "-f", "-o", "c.bin", `${own}/files/g.bin`], {
        cwd: dest,
      });
      assert.notEqual(ownRefused.code, 0, "curl got the forged part through cluster --verify");
      const ownStats = await run("curl", ["-sS", `${own}/stats`]);
      assert.ok(JSON.parse(ownStats.stdout).digestMismatches >= 1, ownStats.stdout);
    } finally {
      await trusting.stop();
      await verifying.stop();
      await cluster.stop();
    }
  },
});

Deno.test({
  name:
    "gateway: failover: an instance killed mid-response, curl still gets every byte (R=2, 1 down)",
  ignore: missingTool("curl"),
  async fn() {
    const size = 8 * MiB + 77;
    // Slow instances (1 MiB/s each): the gateway, two parts ahead at most, is still reading
    // when the kill comes, even on a busy machine.
    const cluster = await startCluster({
      servers: 3,
      replicas: 2,
      partSize: "512KiB",
      files: { "a.bin": size },
      clusterArgs: ["--limit-rate", "1MiB"],
    });
    const gateway = await startGateway(["--data", cluster.dir]);
    try {
      const dest = await newDest(cluster);
      const download = run("curl", ["-sS", "-f", "-O", `${gateway.url}/files/a.bin`], {
        cwd: dest,
      });
      await _waitFor(
        "the download to be under way",
        async () => ((await gateway.stats()).bodyBytes ?? 0) >= MiB,
      );
      await _killInstance(cluster.dir, cluster.ports[1]!);
      const sentAtKill = (await gateway.stats()).bodyBytes!;
      const got = await download;
      assert.equal(got.code, 0, got.stderr);
      assert.ok(sentAtKill < size - MiB, `the gateway had sent ${sentAtKill} bytes at the kill`);
      await assertSameFile(join(dest, "a.bin"), join(cluster.work, "src", "a.bin"));
      const stats = await gateway.stats();
      assert.ok(stats.failovers! >= 1, JSON.stringify(stats));
      assert.equal(stats.aborted, 0);
    } finally {
      await gateway.stop();
      await cluster.stop();
    }
  },
});

Deno.test({
  name:
    "gateway: all replicas of a part gone: the connection is aborted, curl exits non-zero (R=1)",
  ignore: missingTool("curl"),
  async fn() {
    const size = 6 * MiB + 5;
    // Slow instances: most parts are still to be read when one is killed.
    const cluster = await startCluster({
      servers: 2,
      replicas: 1,
      files: { "a.bin": size },
      clusterArgs: ["--limit-rate", "1MiB"],
    });
    const gateway = await startGateway(["--data", cluster.dir]);
    try {
      const dest = await newDest(cluster);
      const download = run("curl", ["-sS", "-f", "-o", "a.bin", `${gateway.url}/files/a.bin`], {
        cwd: dest,
      });
      await _waitFor(
        "the download to be under way",
        async () => ((await gateway.stats()).bodyBytes ?? 0) >= 256 * KiB,
      );
      await _killInstance(cluster.dir, cluster.ports[1]!);
      const got = await download;
      assert.notEqual(got.code, 0, "curl exited 0 on a cut-off download");
      assert.match(got.stderr, /transfer closed with \d+ bytes remaining|Connection|partial/i);
      assert.ok((await Deno.stat(join(dest, "a.bin"))).size < size);
      assert.equal((await gateway.stats()).aborted, 1);
      assert.match(gateway.process.stdout, /Aborted "a\.bin" after \d+ of \d+ bytes/);
      // A range whose first part has no replica left: a clean 502, not a cut-off.
      const entry = (await readManifestJson(cluster.dir)).files["a.bin"]!;
      const gone = entry.parts.findIndex((p) => p.replicas.includes(String(cluster.ports[1])));
      const offset = gone * entry.partSize;
      const answer = await curlHead(`${gateway.url}/files/a.bin`, [
        "-r",
        `${offset}-${offset + 10}`,
        "-o",
        "/dev/null",
      ]);
      assert.equal(answer.status, 502);
      // Every part held is given back: the aborted download's reads still under way (from the
      // slow instance left) end a moment later, so this is waited for, not read at once.
      await _waitFor(
        "the part budget to be given back",
        async () => (await gateway.stats()).partBytesHeld === 0,
      );
    } finally {
      await gateway.stop();
      await cluster.stop();
    }
  },
});

Deno.test({
  name:
    "gateway: a client that stops reading is cut off at the write deadline (1 s), its parts freed",
  ignore: missingTool("curl"),
  async fn() {
    const size = 48 * MiB;
    const cluster = await startCluster({
      servers: 2,
      replicas: 1,
      partSize: "1MiB",
      files: { "big.bin": size },
    });
    const gateway = await startGateway(["--data", cluster.dir, "--write-timeout", "1s"]);
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: gateway.port });
    try {
      await conn.write(new TextEncoder().encode("GET /files/big.bin HTTP/1.1\r\nHost: x\r\n\r\n"));
      // Read nothing: the socket buffers fill, the gateway's writes stall.
      await _waitFor(
        "the gateway to cut the stalled client off",
        async () => (await gateway.stats()).stalled === 1,
        20_000,
      );
      const stats = await gateway.stats();
      assert.equal(stats.partBytesHeld, 0);
      assert.ok(stats.bodyBytes! < size, `${stats.bodyBytes}`);
      // Draining what the buffers held ends in the close, short of the file.
      let received = 0;
      const buffer = new Uint8Array(MiB);
      while (true) {
        const n = await conn.read(buffer).catch(() => null);
        if (n === null) break;
        received += n;
      }
      assert.ok(received < size, `${received}`);
      assert.equal((await curlHead(`${gateway.url}/files/big.bin`, ["-I"])).status, 200);
    } finally {
      try {
        conn.close();
      } catch { /* closed */ }
      await gateway.stop();
      await cluster.stop();
    }
  },
});

Deno.test({
  name: "gateway: every instance down: the index is 503 with Retry-After, a file 502 or 503",
  ignore: missingTool("curl"),
  async fn() {
    const cluster = await startCluster({ servers: 2, replicas: 1, files: { "a.bin": 50_000 } });
    const gateway = await startGateway(["--data", cluster.dir]);
    try {
      assert.equal((await curlHead(`${gateway.url}/`, ["-I"])).status, 200);
      for (const port of cluster.ports) await _killInstance(cluster.dir, port);
      for (const flags of [["-o", "/dev/null"], ["-I"]]) {
        for (const path of ["/", "/?format=json"]) {
          const answer = await curlHead(`${gateway.url}${path}`, flags);
          assert.equal(answer.status, 503, `${path} ${flags.join(" ")}`);
          assert.equal(answer.headers.get("retry-after"), "5", path);
        }
      }
      // Its entry known from the index: no replica to read its bytes from (502).
      const file = await curlHead(`${gateway.url}/files/a.bin`, ["-o", "/dev/null"]);
      assert.ok([502, 503].includes(file.status), `${file.status}`);
    } finally {
      await gateway.stop();
      await cluster.stop();
    }
  },
});

Deno.test({
  name:
    "gateway: slow readers from one address hold at most half of --memory; another address is served meanwhile",
  ignore: missingTool("curl"),
  async fn() {
    const size = 8 * MiB + 99;
    const cluster = await startCluster({
      servers: 2,
      replicas: 1,
      partSize: "1MiB",
      files: { "a.bin": size },
    });
    const gateway = await startGateway(["--data", cluster.dir, "--memory", "4MiB"]);
    const url = `${gateway.url}/files/a.bin`;
    // Each takes 2 KiB/s: its parts stay held; together they would pin the whole budget.
    const slow = Array.from({ length: 6 }, () =>
      new Deno.Command("curl", {
        args: ["-sS", "-o", "/dev/null", "--interface", "127.0.0.1", "--limit-rate", "2k", url],
        stdout: "null",
        stderr: "null",
      }).spawn());
    try {
      await _waitFor(
        "the slow readers to hold parts",
        async () => ((await gateway.stats()).partBytesHeld ?? 0) >= 2 * MiB,
      );
      const dest = await newDest(cluster);
      const other = await run(
        "curl",
        ["-sS", "-f", "--max-time", "30", "--interface", "127.0.0.2", "-o", "a.bin", url],
        { cwd: dest },
      );
      assert.equal(other.code, 0, other.stderr);
      await assertSameFile(join(dest, "a.bin"), join(cluster.work, "src", "a.bin"));
      assert.ok((await gateway.stats()).partBytesHeld! <= 4 * MiB);
    } finally {
      for (const curl of slow) {
        try {
          curl.kill("SIGKILL");
        } catch { /* exited */ }
      }
      await Promise.all(slow.map((curl) => curl.status));
      await gateway.stop();
      await cluster.stop();
    }
  },
});

Deno.test({
  name: "gateway: HTTPS with the cluster's certificate, instances over TLS too",
  ignore: missingTool("curl") || missingTool("openssl"),
  async fn() {
    const certDir = await Deno.makeTempDir({ prefix: "fts-gw-tls-" });
    const certs = await makeTestCertificates(certDir);
    const tls = ["--tls-cert", certs.cert, "--tls-key", certs.key, "--tls-ca", certs.ca];
    const cluster = await startCluster({
      servers: 3,
      replicas: 2,
      files: { "a.bin": MiB + 3 },
      clusterArgs: tls,
    });
    try {
      const gateway = await startGateway(["--data", cluster.dir, ...tls]);
      try {
        assert.match(gateway.url, /^https:\/\/127\.0\.0\.1:\d+$/);
        const dest = await newDest(cluster);
        const url = `${gateway.url}/files/a.bin`;
        const got = await run("curl", ["-sS", "-f", "--cacert", certs.ca, "-O", url], {
          cwd: dest,
        });
        assert.equal(got.code, 0, got.stderr);
        await assertSameFile(join(dest, "a.bin"), join(cluster.work, "src", "a.bin"));
        // A client that does not trust the CA is refused by its own TLS check.
        const untrusted = await run("curl", [
          "-sS",
          "--cacert",
          certs.otherCa,
          "-o",
          "/dev/null",
          url,
        ]);
        assert.equal(untrusted.code, 60, untrusted.stderr);
        // Plain HTTP to the HTTPS port gets no file.
        const plain = await run("curl", ["-sS", "-o", "/dev/null", url.replace("https", "http")]);
        assert.notEqual(plain.code, 0);
      } finally {
        await gateway.stop();
      }
    } finally {
      await cluster.stop();
      await Deno.remove(certDir, { recursive: true });
    }
  },
});
