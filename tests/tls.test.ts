/**
 * Transport security: instances serving TLS with a certificate this test makes
 * (a throwaway CA and a server certificate for IP 127.0.0.1), clients trusting
 * only that CA.
 */
import assert from "node:assert/strict";
import { preferredTlsError, TlsError } from "../lib/wire/tls.ts";
import { join } from "node:path";
import {
  assertSameFile,
  freePortRange,
  newDest,
  runFts,
  startCluster,
  tempDir,
  writeRandomFile,
} from "./harness.ts";
import { missingTool } from "./missing_tool.ts";
import { TmuxTerminal } from "./tmux.ts";
import { makeTestCertificates } from "./tls_certs.ts";

const MiB = 1024 * 1024;

/** Deno.test for a test that makes certificates: ignored where openssl is missing. */
function test(name: string, fn: () => Promise<void>): void {
  Deno.test({ name, ignore: missingTool("openssl"), fn });
}

test("tls: fetch, upload, mv, status and ls over TLS; wrong or missing CA refused clearly", async () => {
  const certDir = await Deno.makeTempDir({ prefix: "fts-tls-" });
  const certs = await makeTestCertificates(certDir);
  const cluster = await startCluster({
    servers: 4,
    replicas: 2,
    files: { "a.bin": 2 * MiB + 99 },
    clusterArgs: ["--tls-cert", certs.cert, "--tls-key", certs.key, "--tls-ca", certs.ca],
  });
  try {
    const source = join(cluster.work, "src", "a.bin");
    // With the CA, by flag and by environment: byte-identical.
    let dest = await newDest(cluster);
    const fetched = await cluster.fts(["fetch", "a.bin", dest, "--tls-ca", certs.ca]);
    assert.equal(fetched.code, 0, fetched.stderr);
    await assertSameFile(join(dest, "a.bin"), source);
    dest = await newDest(cluster);
    const byEnv = await cluster.fts(["fetch", "a.bin", dest], { env: { FTS_TLS_CA: certs.ca } });
    assert.equal(byEnv.code, 0, byEnv.stderr);
    await assertSameFile(join(dest, "a.bin"), source);

    // The signed commands take the CA from FTS_TLS_CA, or from --tls-ca.
    const upSource = join(cluster.work, "up.bin");
    await writeRandomFile(upSource, MiB + 3, 77);
    const env = { FTS_TLS_CA: certs.ca };
    const uploaded = await cluster.fts(["upload", upSource, "--operator"], { env });
    assert.equal(uploaded.code, 0, uploaded.stderr);
    dest = await newDest(cluster);
    const back = await cluster.fts(["fetch", "up.bin", dest, "--tls-ca", certs.ca]);
    assert.equal(back.code, 0, back.stderr);
    await assertSameFile(join(dest, "up.bin"), upSource);
    const renamed = await cluster.fts([
      "mv",
      "up.bin",
      "up2.bin",
      "--operator",
      "--tls-ca",
      certs.ca,
    ]);
    assert.equal(renamed.code, 0, renamed.stderr);
    // Without it (servers named, so not the data directory's recorded CA either), rm says the
    // instances speak TLS, not "is the cluster running?".
    const server = ["--server", `127.0.0.1:${cluster.ports[0]}`];
    const plainRm = await cluster.fts(["rm", "up2.bin", "--operator", ...server]);
    assert.equal(plainRm.code, 1, plainRm.stderr);
    assert.match(plainRm.stderr, /speaks TLS: pass the CA .* --tls-ca/);

    const status = await cluster.fts(["status", "--json", "--tls-ca", certs.ca]);
    assert.equal(status.code, 0, status.stderr);
    const report = JSON.parse(status.stdout);
    assert.equal(report.instances.filter((i: { up: boolean }) => i.up).length, 4);
    const ls = await cluster.fts([
      "ls",
      "--json",
      "--server",
      `127.0.0.1:${cluster.ports[0]}`,
      "--tls-ca",
      certs.ca,
    ]);
    assert.equal(ls.code, 0, ls.stderr);
    assert.deepEqual(JSON.parse(ls.stdout).map((f: { name: string }) => f.name), [
      "a.bin",
      "up2.bin",
    ]);

    // A CA that did not sign the instances' certificate: refused, and said why.
    dest = await newDest(cluster);
    const wrongCa = await cluster.fts(["fetch", "a.bin", dest, "--tls-ca", certs.otherCa]);
    assert.equal(wrongCa.code, 1, wrongCa.stderr);
    assert.match(wrongCa.stderr, /TLS handshake with 127\.0\.0\.1:\d+ failed: .*certificate/);
    assert.match(wrongCa.stderr, /--tls-ca/);
    assert.deepEqual([...Deno.readDirSync(dest)], [], "a refused fetch wrote something");

    // No CA at all: the client speaks plain TCP to a TLS instance.
    const plain = await cluster.fts(["fetch", "a.bin", dest, ...server]);
    assert.equal(plain.code, 1, plain.stderr);
    assert.match(plain.stderr, /speaks TLS: pass the CA .* --tls-ca/);

    // On the cluster's host, its data directory's record of the CA its instances
    // trust is enough: no flag, no FTS_TLS_CA.
    const local = await cluster.fts(["fetch", "a.bin", dest]);
    assert.equal(local.code, 0, local.stderr);
    await assertSameFile(join(dest, "a.bin"), source);
    for (const command of [["status"], ["repair", "--dry-run"], ["ls"]]) {
      const result = await cluster.fts(command);
      assert.equal(result.code, 0, `${command[0]}: ${result.stderr}`);
    }
    assert.equal((await cluster.fts(["rm", "up2.bin", "--operator"])).code, 0);

    // Status and repair without the CA say so, rather than "all down, every file lost"
    // (here with no record of it in the data directory).
    const record = join(cluster.dir, "serve_flags.json");
    await Deno.rename(record, `${record}.aside`);
    try {
      for (const command of ["status", "repair"]) {
        const blind = await cluster.fts([command]);
        assert.equal(blind.code, 1, blind.stderr);
        assert.match(blind.stderr, /speaks TLS: pass the CA .* --tls-ca/);
        assert.doesNotMatch(blind.stdout, /LOST/);
      }
    } finally {
      await Deno.rename(`${record}.aside`, record);
    }
  } finally {
    await cluster.stop();
    await Deno.remove(certDir, { recursive: true });
  }
});

test("tls: a TLS client to a plain instance fails clearly", async () => {
  const certDir = await Deno.makeTempDir({ prefix: "fts-tls-" });
  const certs = await makeTestCertificates(certDir);
  const cluster = await startCluster({ servers: 2, replicas: 1, files: { "b.bin": 300_000 } });
  try {
    const dest = await newDest(cluster);
    const result = await cluster.fts(["fetch", "b.bin", dest, "--tls-ca", certs.ca]);
    assert.equal(result.code, 1, result.stderr);
    assert.match(
      result.stderr,
      /TLS handshake with 127\.0\.0\.1:\d+ failed: .*is the instance serving TLS/,
    );
  } finally {
    await cluster.stop();
    await Deno.remove(certDir, { recursive: true });
  }
});

test("tls: fts serve checks its certificate flags before listening", async () => {
  const certDir = await Deno.makeTempDir({ prefix: "fts-tls-" });
  try {
    const certs = await makeTestCertificates(certDir);
    const data = join(certDir, "data");
    const onlyCert = await runFts([
      "serve",
      "--port",
      "0",
      "--data",
      data,
      "--tls-cert",
      certs.cert,
    ]);
    assert.equal(onlyCert.code, 2);
    assert.match(onlyCert.stderr, /--tls-cert and --tls-key must be given together/);
    const swapped = await runFts(
      ["serve", "--port", "0", "--data", data, "--tls-cert", certs.key, "--tls-key", certs.key],
    );
    assert.equal(swapped.code, 2);
    assert.match(swapped.stderr, /is not a PEM certificate/);
    // Another certificate's key: said once, before listening, not as "cannot listen".
    const otherKey = join(certDir, "other-ca.key");
    const mismatched = await runFts(
      ["serve", "--port", "0", "--data", data, "--tls-cert", certs.cert, "--tls-key", otherKey],
    );
    assert.equal(mismatched.code, 2, mismatched.stderr);
    assert.match(mismatched.stderr, /The TLS key .* does not go with the certificate/);
    // fts cluster needs the CA its healing checks the instances with, and a
    // refused start leaves no data directory behind.
    const clusterData = join(certDir, "cluster-data");
    const tlsFlags = ["--tls-cert", certs.cert, "--tls-key", certs.key];
    for (
      const [flags, message] of [
        [tlsFlags, /--tls-cert needs --tls-ca FILE too/],
        [["--tls-cert", certs.cert, "--tls-key", join(certDir, "typo.key")], /Cannot read/],
      ] as const
    ) {
      const refused = await runFts(
        ["cluster", "--data", clusterData, "--servers", "2", "--plain", ...flags],
        { env: { FTS_TLS_CA: "" } },
      );
      assert.equal(refused.code, 2, refused.stderr);
      assert.match(refused.stderr, message);
      await assert.rejects(Deno.stat(clusterData), Deno.errors.NotFound);
    }
    const missing = await runFts(
      ["fetch", "x", certDir, "--server", "127.0.0.1:1", "--tls-ca", join(certDir, "nope.pem")],
    );
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /Cannot read the TLS CA certificate/);
  } finally {
    await Deno.remove(certDir, { recursive: true });
  }
});

test("tls: fts start without a supervisor brings an instance back with the last cluster's flags, its output in its log", async () => {
  const certDir = await Deno.makeTempDir({ prefix: "fts-tls-" });
  const certs = await makeTestCertificates(certDir);
  const cluster = await startCluster({
    servers: 2,
    replicas: 1,
    files: { "c.bin": 300_000 },
    clusterArgs: [
      "--tls-cert",
      certs.cert,
      "--tls-key",
      certs.key,
      "--tls-ca",
      certs.ca,
      "--limit-rate",
      "64MiB",
    ],
  });
  const port = cluster.ports[0]!;
  let detached = false;
  try {
    // The cluster stops, and its instances with it; no supervisor is left.
    cluster.supervisor.kill("SIGTERM");
    await cluster.supervisor.status;
    const up = await cluster.fts(["start", String(port), "--json"]);
    assert.equal(up.code, 0, up.stderr);
    detached = true;
    const reply = JSON.parse(up.stdout);
    assert.equal(reply.supervised, false);
    assert.deepEqual(reply.serveArgs, [
      "--limit-rate",
      String(64 * MiB),
      "--tls-cert",
      certs.cert,
      "--tls-key",
      certs.key,
    ]);
    // It serves TLS with the cluster's certificate, and nothing in plain TCP.
    const server = ["--server", `127.0.0.1:${port}`];
    const ls = await cluster.fts(["ls", "--json", ...server, "--tls-ca", certs.ca]);
    assert.equal(ls.code, 0, ls.stderr);
    assert.deepEqual(JSON.parse(ls.stdout).map((f: { name: string }) => f.name), ["c.bin"]);
    const plain = await cluster.fts(["ls", ...server]);
    assert.equal(plain.code, 1, plain.stderr);
    assert.match(plain.stderr, /speaks TLS: pass the CA/);
    const upSource = join(cluster.work, "src", "c.bin");
    const plainUpload = await cluster.fts([
      "upload",
      upSource,
      "--as",
      "c2.bin",
      "--operator",
      ...server,
    ]);
    assert.equal(plainUpload.code, 1, plainUpload.stderr);
    assert.match(plainUpload.stderr, /speaks TLS: pass the CA/);
    // Its output goes to its log, as under the supervisor.
    const log = join(cluster.dir, "logs", `${port}.log`);
    assert.match(
      await Deno.readTextFile(log),
      new RegExp(`ready: instance ${port} listening on .* with TLS \\(pid ${reply.pid}\\)`),
    );
    const killed = await cluster.fts(["kill", String(port)]);
    assert.equal(killed.code, 0, killed.stderr);
    detached = false;

    // An instance that cannot start (its certificate is gone) is reported at
    // once with the reason from its log, not after a long wait.
    await Deno.remove(certs.cert);
    const failed = await cluster.fts(["start", String(port)]);
    detached = failed.code === 0;
    assert.equal(failed.code, 1, failed.stdout);
    assert.match(
      failed.stderr,
      /Instance \d+ exited \(code \d+\) before it listened: .*server\.pem.* \(log: .*\.log\)/,
    );
  } finally {
    if (detached) await cluster.fts(["kill", String(port)]);
    await cluster.stop();
    await Deno.remove(certDir, { recursive: true });
  }
});

Deno.test("start: a damaged record of the cluster's flags stops fts start, rather than starting without them", async () => {
  const cluster = await startCluster({ servers: 2, replicas: 1, files: { "d.bin": 100_000 } });
  try {
    cluster.supervisor.kill("SIGTERM");
    await cluster.supervisor.status;
    const record = JSON.parse(await Deno.readTextFile(join(cluster.dir, "serve_flags.json")));
    assert.deepEqual(record.args, []);
    await Deno.writeTextFile(
      join(cluster.dir, "serve_flags.json"),
      '{"format": "fts-serve-flags"}',
    );
    const result = await cluster.fts(["start", String(cluster.ports[1])]);
    assert.equal(result.code, 1, result.stdout);
    assert.match(result.stderr, /serve_flags\.json is damaged; remove it/);
    // Nothing started: status finds no instance answering.
    const status = await cluster.fts(["status"]);
    assert.equal(status.code, 1, status.stdout);
    assert.match(status.stderr, /No instance of the cluster answers/);
  } finally {
    await cluster.stop();
  }
});

Deno.test({
  name:
    "tls: the live view of fts cluster goes on after a TLS error, and shows the instance once it answers (tmux)",
  ignore: missingTool("tmux"),
  fn: async () => {
    const work = await tempDir("fts-tls-live-");
    const term = new TmuxTerminal();
    try {
      // Two CAs, each with a certificate for 127.0.0.1; the cluster trusts the first.
      for (const ca of ["good", "other"]) {
        const made = await runFts(["certs", "--ca", join(work, ca), "--host", "127.0.0.1"]);
        assert.equal(made.code, 0, made.stderr);
      }
      const use = async (ca: string) => {
        for (const ext of ["pem", "key"]) {
          await Deno.copyFile(join(work, ca, `host-127.0.0.1.${ext}`), join(work, `cur.${ext}`));
        }
      };
      await use("good");
      const port = freePortRange(1);
      await term.start([
        "cluster",
        "--data",
        join(work, "data"),
        ...["--servers", "1", "--replicas", "1", "--base-port", `${port}`, "--heal-after", "0"],
        ...["--tls-cert", join(work, "cur.pem"), "--tls-key", join(work, "cur.key")],
        ...["--tls-ca", join(work, "good", "ca.pem")],
      ], { columns: 140, rows: 40, env: { NO_COLOR: "1" } });
      await term.waitFor(/instances {2}1\/1 up/);
      const restart = async (round: number) => {
        await term.type(`kill ${port}`);
        await term.sendKeys("Enter");
        await term.waitFor(
          new RegExp(`(instance ${port} down \\(killed by SIGKILL\\)[^]*){${round}}`),
        );
        await term.type(`start ${port}`);
        await term.sendKeys("Enter");
        await term.waitFor(new RegExp(`(instance ${port} up \\(pid \\d+\\)[^]*){${round}}`));
      };
      // The instance comes back with a certificate the cluster's CA did not sign:
      // every poll of the view fails its handshake. Said once, not as the view's end.
      await use("other");
      await restart(1);
      let screen = await term.waitFor(/cannot read the cluster's state: TLS handshake with/);
      assert.doesNotMatch(screen, /watch stopped/);
      // Back with the right certificate: the view reads the cluster again.
      await use("good");
      await restart(2);
      screen = await term.waitFor(/the cluster's state reads again/);
      screen = await term.waitFor(/instances {2}1\/1 up/);
      assert.match(screen, new RegExp(`${port} up\\b`));
      assert.equal(screen.match(/cannot read the cluster's state/g)?.length, 1, screen);
      await term.sendKeys("C-c");
      await term.waitFor(/\[exit 0\]/);
    } finally {
      await term.close();
      await Deno.remove(work, { recursive: true });
    }
  },
});

Deno.test("preferredTlsError(): a server that speaks TLS differently first, then a timeout only if every server timed out", () => {
  const wrong = new TlsError("127.0.0.1:1 speaks TLS");
  const slow = new TlsError("TLS handshake with 127.0.0.1:2 took over 1000 ms", { timedOut: true });
  assert.equal(preferredTlsError([slow, wrong], 3), wrong);
  assert.equal(preferredTlsError([slow], 3), undefined, "others were simply down");
  assert.equal(preferredTlsError([slow, slow], 2), slow);
  assert.equal(preferredTlsError([], 2), undefined);
});
