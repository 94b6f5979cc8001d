/**
 * The operator's key in etcd mode: each host's data directory holds a key of
 * its own (it signs that host's healing copies), and only the first host's
 * is the operator's. Acting as the operator from another host with its own
 * key is refused, rather than making that host the owner of what it stores.
 * And a host's data directory holds no list of files: given without --etcd
 * to a command that would read one there, it is refused, not read as a
 * cluster whose every part is unused (a repair would delete them all).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { EtcdProcess } from "../bench/etcd_process.ts";
import { runFts } from "./harness.ts";
import { etcdTest, startLoopbackHost } from "./etcd_host.ts";
import { storedPartNames } from "./replicas.ts";

etcdTest(
  "etcd host directories: --operator needs the first host's key; without --etcd they are refused",
  "fts-etcd-operator-",
  async (dir, etcd, hosts) => {
    const flags = ["--etcd", etcd.endpoints, "--cluster", "operator"];
    for (const i of [0, 1]) {
      hosts.push(await startLoopbackHost(i, { flags, dir, extra: ["--heal-after", "0"] }));
    }
    const source = join(dir, "p.bin");
    await Deno.writeFile(source, new Uint8Array(5000).fill(7));
    const data = (i: number) => ["--data", join(dir, `host${i}`)];
    for (const command of [["preload", source], ["rm", "p.bin", "--operator"]]) {
      const refused = await runFts([...command, ...flags, ...data(1)]);
      assert.equal(refused.code, 2, refused.stderr);
      assert.match(refused.stderr, /is this host's own key, not the operator's of cluster/);
    }
    // A start refused by etcd's settings (R=2 recorded) leaves no directory behind.
    const fresh = join(dir, "host9");
    const refusedStart = await runFts([
      "cluster",
      ...flags,
      "--host",
      "127.0.0.9",
      "--replicas",
      "3",
      "--data",
      fresh,
      "--plain",
    ]);
    assert.equal(refusedStart.code, 2, refusedStart.stderr);
    assert.match(refusedStart.stderr, /--replicas 3 contradicts cluster "operator"/);
    await assert.rejects(Deno.stat(fresh), Deno.errors.NotFound);
    const listed = await runFts(["ls", "--json", ...flags]);
    assert.deepEqual(JSON.parse(listed.stdout), []);
    // With the first host's key copied in, the second host acts as the operator.
    await Deno.copyFile(
      join(dir, "host0", "operator_identity.json"),
      join(dir, "host1", "operator_identity.json"),
    );
    const preloaded = await runFts(["preload", source, ...flags, ...data(1), "--json"]);
    assert.equal(preloaded.code, 0, preloaded.stderr);
    // --json over the network too: one object a file.
    const said = JSON.parse(preloaded.stdout);
    assert.deepEqual([said.ok, said.name, said.size, said.replicas], [true, "p.bin", 5000, 2]);
    // The same fields as a local preload's, partSize too.
    assert.ok(Number.isInteger(said.partSize) && said.partSize > 0, preloaded.stdout);
    // Without --etcd, a host's directory is not a cluster of its own with no files.
    const stored = async () => (await storedPartNames(dir)).join();
    const before = await stored();
    assert.notEqual(before, "");
    for (
      const command of [
        ["repair", "--unused-after", "1h"],
        ["repair", "--new-cluster"],
        ["status"],
        ["ls"],
        ["preload", source, "--as", "q.bin"],
        ["cluster", "--plain"],
      ]
    ) {
      const refused = await runFts([...command, ...data(0)], { env: { FTS_ETCD: "" } });
      assert.equal(refused.code, 2, `${command[0]}: ${refused.stderr}`);
      assert.match(refused.stderr, /is the data directory of a host of a cluster in etcd/);
      assert.match(
        refused.stderr,
        new RegExp(`pass --etcd ${etcd.endpoints} --cluster operator`),
      );
    }
    assert.equal(await stored(), before, "a refused command deleted parts");
    // Someone else's rm: the owner is named as the operator, and --operator is the remedy.
    const strangerKey = ["--identity", join(dir, "stranger")];
    assert.equal((await runFts(["whoami", ...strangerKey])).code, 0);
    const stranger = await runFts(["rm", "p.bin", ...flags, ...strangerKey]);
    assert.equal(stranger.code, 1, stranger.stderr);
    assert.match(stranger.stderr, /it belongs to operator \(ed25519:\S+\), not to /);
    assert.match(stranger.stderr, /pass --operator/);
    const removed = await runFts(["rm", "p.bin", "--operator", ...flags, ...data(0)]);
    assert.equal(removed.code, 0, removed.stderr);
    // Copies on the other host are freed there: the line does not count them.
    assert.match(
      removed.stdout,
      /(copy|copies) on the host that took the delete; the other hosts free theirs/,
    );
    // A host's directory given to a cluster of another name: refused before etcd or the
    // directory is written, whether its own cluster runs (host 1) or not (host 1 stopped).
    const other = ["--etcd", etcd.endpoints, "--cluster", "other"];
    const mark = () => Deno.readTextFile(join(dir, "host1", "etcd_host.json"));
    const marked = await mark();
    for (const running of [true, false]) {
      if (!running) {
        hosts[1]!.kill("SIGTERM");
        await hosts[1]!.status;
      }
      const start = ["cluster", ...other, "--host", "127.0.0.3", ...data(1), "--plain"];
      const refused = await runFts(start);
      assert.notEqual(refused.code, 0, refused.stderr);
      assert.match(
        refused.stderr,
        running
          ? /A cluster is already running for/
          : /holds the parts of a host of cluster "operator" in etcd, not of "other"/,
      );
      assert.equal(await mark(), marked);
      const unknown = await runFts(["ls", ...other]);
      assert.notEqual(unknown.code, 0, 'a refused start recorded cluster "other" in etcd');
    }
    // The same directory and name against an etcd that does not hold that cluster (wiped,
    // restored from an old backup, or another etcd): refused, not made a new, empty cluster
    // in which every part here would count as unused.
    const hostParts = await storedPartNames(join(dir, "host1"));
    const otherEtcd = await EtcdProcess.start({ addresses: ["127.0.0.1"] });
    try {
      const elsewhere = ["--etcd", otherEtcd.endpoints, "--cluster", "operator"];
      const start = ["cluster", ...elsewhere, "--host", "127.0.0.3", ...data(1), "--plain"];
      const lost = await runFts(start);
      assert.equal(lost.code, 2, lost.stderr);
      assert.match(lost.stderr, /is a host of cluster "operator" \(id [\w-]+\), which etcd at/);
      assert.notEqual((await runFts(["ls", ...elsewhere])).code, 0, "a new cluster was made");
      // A new cluster of that name there is another cluster: refused too.
      const newcomer = await startLoopbackHost(5, { flags: elsewhere, dir, extra: [] });
      newcomer.kill("SIGTERM");
      await newcomer.status;
      const another = await runFts(start);
      assert.equal(another.code, 2, another.stderr);
      assert.match(another.stderr, /holds another cluster of that name/);
      assert.equal(await mark(), marked);
      assert.deepEqual(await storedPartNames(join(dir, "host1")), hostParts);
    } finally {
      await otherEtcd.stop();
    }
  },
);
