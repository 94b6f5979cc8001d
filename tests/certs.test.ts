/**
 * `fts certs`: a cluster CA and host certificates made without openssl, used
 * by real TLS instances and clients, checked by `openssl verify`; a server
 * presenting another host's certificate is refused; bad input is one line.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  assertSameFile,
  freePortRange,
  FtsProcess,
  runFts,
  tempDir,
  writeRandomFile,
} from "./harness.ts";
import { missingTool } from "./missing_tool.ts";

const MiB = 1024 * 1024;

async function _openssl(args: string[]): Promise<{ code: number; out: string }> {
  const output = await new Deno.Command("openssl", { args, stdout: "piped", stderr: "piped" })
    .output();
  const decoder = new TextDecoder();
  return { code: output.code, out: decoder.decode(output.stdout) + decoder.decode(output.stderr) };
}

function _paths(ca: string, host: string) {
  return { cert: join(ca, `host-${host}.pem`), key: join(ca, `host-${host}.key`) };
}

Deno.test({
  name:
    "certs: CA + certs for 127.0.0.1 and .2; TLS cluster on .2 serves a fetch; openssl verifies",
  ignore: missingTool("openssl"),
  async fn() {
    const work = await tempDir();
    const ca = join(work, "ca");
    let supervisor: FtsProcess | undefined;
    try {
      const made = await runFts([
        "certs",
        "--ca",
        ca,
        "--host",
        "127.0.0.1",
        "--host",
        "127.0.0.2",
      ]);
      assert.equal(made.code, 0, made.stderr);
      assert.match(made.stdout, /created the cluster CA .*ca\.pem/);
      assert.match(made.stdout, /--tls-cert \S+host-127\.0\.0\.2\.pem --tls-key \S+\.key --tls-ca/);
      assert.match(made.stdout, /\(fts serve: all but --tls-ca\)/);
      for (const host of ["127.0.0.1", "127.0.0.2"]) {
        const { cert, key } = _paths(ca, host);
        const verified = await _openssl(["verify", "-CAfile", join(ca, "ca.pem"), cert]);
        assert.equal(verified.code, 0, verified.out);
        assert.match(verified.out, /: OK/);
        const text = await _openssl(["x509", "-in", cert, "-noout", "-text"]);
        assert.match(text.out, new RegExp(`IP Address:${host.replaceAll(".", "\\.")}\\b`));
        assert.match(text.out, /CA:FALSE/);
        assert.equal((await Deno.stat(key)).mode! & 0o777, 0o600);
      }
      assert.equal((await Deno.stat(join(ca, "ca.key"))).mode! & 0o777, 0o600);

      // Again: the CA is reused (byte for byte), the host's certificate replaced.
      const caBefore = await Deno.readFile(join(ca, "ca.pem"));
      const again = await runFts(["certs", "--ca", ca, "--host", "127.0.0.2"]);
      assert.equal(again.code, 0, again.stderr);
      assert.match(again.stdout, /using the cluster CA/);
      assert.match(again.stdout, /replaced 127\.0\.0\.2/);
      assert.deepEqual(await Deno.readFile(join(ca, "ca.pem")), caBefore);

      // A TLS cluster on 127.0.0.2 with that certificate; a client trusting only the CA.
      const data = join(work, "data");
      const source = join(work, "a.bin");
      await writeRandomFile(source, 3 * MiB + 17, 5);
      const base = freePortRange(3);
      const shape = ["--servers", "3", "--base-port", `${base}`, "--replicas", "2"];
      const preload = await runFts(
        ["preload", source, "--data", data, "--host", "127.0.0.2", "--part-size", "1MiB", ...shape],
      );
      assert.equal(preload.code, 0, preload.stderr);
      const { cert, key } = _paths(ca, "127.0.0.2");
      supervisor = new FtsProcess([
        "cluster",
        "--data",
        data,
        "--host",
        "127.0.0.2",
        ...shape,
        ...["--tls-cert", cert, "--tls-key", key, "--tls-ca", join(ca, "ca.pem")],
      ]);
      await supervisor.waitFor(/fts cluster: ready/, 60_000);
      const dest = join(work, "dest");
      await Deno.mkdir(dest);
      const fetched = await runFts(
        ["fetch", "a.bin", dest, "--data", data, "--tls-ca", join(ca, "ca.pem")],
      );
      assert.equal(fetched.code, 0, fetched.stderr);
      await assertSameFile(join(dest, "a.bin"), source);
    } finally {
      supervisor?.kill("SIGTERM");
      await supervisor?.status;
      await Deno.remove(work, { recursive: true });
    }
  },
});

Deno.test("certs: fts cluster refuses a certificate its clients would refuse; a client says which address it lacks", async () => {
  const work = await tempDir("fts-certs-");
  const ca = join(work, "ca");
  const other = join(work, "other");
  let server: FtsProcess | undefined;
  try {
    for (const [dir, host] of [[ca, "127.0.0.2"], [other, "127.0.0.1"]]) {
      const made = await runFts(["certs", "--ca", dir!, "--host", host!]);
      assert.equal(made.code, 0, made.stderr);
    }
    const caPem = join(ca, "ca.pem");
    const data = join(work, "data");
    const shape = ["--servers", "2", "--replicas", "1", "--base-port", `${freePortRange(2)}`];
    const two = _paths(ca, "127.0.0.2");
    for (
      const [flags, message] of [
        // 127.0.0.2's certificate on instances listening (and dialled) at 127.0.0.1.
        [
          ["--tls-cert", two.cert, "--tls-key", two.key, "--tls-ca", caPem],
          /cannot serve 127\.0\.0\.1: it does not name 127\.0\.0\.1, the address .* --host 127\.0\.0\.1/,
        ],
        // The same, given by --host: in etcd mode too, --host is the address checked.
        [
          ["--host", "127.0.0.1", "--tls-cert", two.cert, "--tls-key", two.key, "--tls-ca", caPem],
          /it does not name 127\.0\.0\.1/,
        ],
        // A certificate another CA signed than the one --tls-ca gives.
        [
          [
            "--tls-cert",
            _paths(other, "127.0.0.1").cert,
            "--tls-key",
            _paths(other, "127.0.0.1").key,
            "--tls-ca",
            caPem,
          ],
          /--tls-ca .*ca\.pem is not the CA that signed it/,
        ],
        // The CA's own certificate, which Deno's clients refuse from a server.
        [
          ["--tls-cert", caPem, "--tls-key", join(ca, "ca.key"), "--tls-ca", caPem],
          /it is a CA's certificate, not a host's/,
        ],
      ] as const
    ) {
      const refused = await runFts(["cluster", "--data", data, "--plain", ...shape, ...flags]);
      assert.equal(refused.code, 2, refused.stdout + refused.stderr);
      assert.equal(refused.stderr.trim().split("\n").length, 1, refused.stderr);
      assert.match(refused.stderr, message);
      assert.doesNotMatch(refused.stdout, /ready/);
      await assert.rejects(Deno.stat(data), Deno.errors.NotFound);
    }

    // An instance started by hand (fts serve has no CA to check with) on 127.0.0.1
    // with 127.0.0.2's certificate: a client is refused, and told the address is the trouble.
    const port = freePortRange(1);
    server = new FtsProcess([
      "serve",
      "--port",
      `${port}`,
      "--data",
      join(work, "serve-data"),
      ...["--tls-cert", two.cert, "--tls-key", two.key],
    ]);
    await server.waitFor(/ready/, 30_000);
    const ls = await runFts(["ls", "--server", `127.0.0.1:${port}`, "--tls-ca", caPem]);
    assert.equal(ls.code, 1, ls.stderr);
    assert.match(ls.stderr, /TLS handshake with 127\.0\.0\.1:\d+ failed: .*not valid for/i);
    assert.match(ls.stderr, /certificate does not name 127\.0\.0\.1: dial an address it names/);
    assert.doesNotMatch(ls.stderr, /is the CA that signed/);
  } finally {
    server?.kill("SIGTERM");
    await server?.status;
    await Deno.remove(work, { recursive: true });
  }
});

Deno.test("certs: bad address, missing --ca, a directory under a file, half a CA: one line each", async () => {
  const work = await tempDir();
  try {
    const bad = await runFts(["certs", "--ca", join(work, "ca"), "--host", "10.0.0.300"]);
    assert.equal(bad.code, 2);
    assert.equal(bad.stderr.trim().split("\n").length, 1, bad.stderr);
    assert.match(bad.stderr, /Bad host address "10\.0\.0\.300": expected an IP address or a DNS/);
    assert.equal(await Deno.stat(join(work, "ca")).catch(() => undefined), undefined);

    const noCa = await runFts(["certs", "--host", "127.0.0.1"]);
    assert.equal(noCa.code, 2);
    assert.match(noCa.stderr, /Missing --ca DIR/);

    await Deno.writeTextFile(join(work, "file"), "not a directory");
    const underFile = await runFts(["certs", "--ca", join(work, "file", "ca")]);
    assert.equal(underFile.code, 1);
    assert.match(underFile.stderr, /Cannot create the certificate directory .*file\/ca/);
    assert.equal(underFile.stderr.trim().split("\n").length, 1, underFile.stderr);

    const half = join(work, "half");
    assert.equal((await runFts(["certs", "--ca", half])).code, 0);
    await Deno.remove(join(half, "ca.pem"));
    const halfCa = await runFts(["certs", "--ca", half, "--host", "127.0.0.1"]);
    assert.equal(halfCa.code, 1);
    assert.match(halfCa.stderr, /holds ca\.key without ca\.pem/);
    assert.equal(await Deno.stat(_paths(half, "127.0.0.1").cert).catch(() => undefined), undefined);

    // A DNS name gets a DNS name in the certificate.
    const named = await runFts([
      "certs",
      "--ca",
      join(work, "named"),
      "--host",
      "Files.Example.org",
    ]);
    assert.equal(named.code, 0, named.stderr);
    assert.match(named.stdout, /wrote files\.example\.org/);
  } finally {
    await Deno.remove(work, { recursive: true });
  }
});
