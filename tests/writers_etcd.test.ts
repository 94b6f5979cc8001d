/**
 * The writers policy of a cluster in etcd: set once with `fts writers --etcd`
 * from anywhere, it reaches the instances of every host with no restart.
 * Two loopback hosts (127.0.0.1, 127.0.0.2), each its own `fts cluster`:
 * closed, an unlisted key's part.put to the second host's instance is
 * refused and its upload fails with one line; added, both work. The second
 * host's own key (not the operator's) still heals a lost copy. A host taken
 * out of service loses that standing with `fts writers rm KEY`. And a quota
 * in etcd through rm, mv, a replace and concurrent uploads.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { freePortRange, runFts, writeRandomFile } from "./harness.ts";
import { etcdTest, startEtcdHost, startLoopbackHost } from "./etcd_host.ts";
import { putPartAs } from "./part_signer.ts";
import { quotaScenario } from "./quota_scenario.ts";

const KiB = 1024;
/** The instances' cache of the policy (WRITERS_CACHE_MS), and some room. */
const POLICY_REACH_MS = 1_500;

function _put(address: string, identityPath: string, seed: number): Promise<string> {
  return putPartAs(address, identityPath, new Uint8Array(16 * KiB).fill(seed));
}

etcdTest(
  "writers in etcd: closed on 2 loopback hosts refuses an unlisted key on the other host; added, it uploads with no restart",
  "fts-writers-etcd-",
  async (dir, etcd, hosts) => {
    const flags = ["--etcd", etcd.endpoints, "--cluster", "writers"];
    const portA = freePortRange(2);
    const portB = freePortRange(2);
    for (
      const [host, basePort, name] of [
        ["127.0.0.1", portA, "a"],
        ["127.0.0.2", portB, "b"],
      ] as const
    ) {
      hosts.push(
        await startEtcdHost({
          flags,
          host,
          servers: 2,
          basePort,
          data: join(dir, name),
          extra: ["--part-size", "64KiB"],
        }),
      );
    }
    const me = join(dir, "me.json");
    const key = (await runFts(["whoami", "--identity", me])).stdout.trim();

    const closed = await runFts(["writers", "closed", ...flags]);
    assert.equal(closed.code, 0, closed.stderr);
    assert.match(closed.stdout, /^writers: closed/);
    // Both hosts joined with their own key: listed as hosts.
    assert.match(closed.stdout, /host ed25519:\S+: always allowed/);
    await new Promise((r) => setTimeout(r, POLICY_REACH_MS));

    const onB = `127.0.0.2:${portB}`;
    assert.match(await _put(onB, me, 1), /^NOT_ALLOWED: key ed25519:\S+ is not allowed/);
    const src = join(dir, "f.bin");
    await writeRandomFile(src, 300 * KiB, 5);
    const refused = await runFts(["upload", src, ...flags, "--identity", me]);
    assert.notEqual(refused.code, 0);
    assert.equal(refused.stderr.trim().split("\n").length, 1, refused.stderr);
    assert.ok(refused.stderr.includes(`ask the operator to run \`fts writers add ${key}\``));

    const added = await runFts(["writers", "add", key, ...flags]);
    assert.equal(added.code, 0, added.stderr);
    await new Promise((r) => setTimeout(r, POLICY_REACH_MS));
    assert.equal(await _put(onB, me, 2), "stored");
    const uploaded = await runFts(["upload", src, ...flags, "--identity", me]);
    assert.equal(uploaded.code, 0, uploaded.stderr);
    const out = join(dir, "out");
    await Deno.mkdir(out);
    const fetched = await runFts(["fetch", "f.bin", out, ...flags]);
    assert.equal(fetched.code, 0, fetched.stderr);
    assert.deepEqual(await Deno.readFile(join(out, "f.bin")), await Deno.readFile(src));

    // Host b (its own key, not the operator's) repairs a copy lost on one of its instances.
    const ls = await runFts(["ls", "f.bin", "--json", ...flags]);
    assert.equal(ls.code, 0, ls.stderr);
    const parts = JSON.parse(ls.stdout).parts as { digest: string; replicas: string[] }[];
    const lost = parts.find((p) => p.replicas.some((id) => id.startsWith("127.0.0.2:")))!;
    const holder = lost.replicas.find((id) => id.startsWith("127.0.0.2:"))!;
    const path = join(
      dir,
      "b",
      "instances",
      holder.split(":")[1]!,
      "parts",
      lost.digest.slice(0, 2),
      lost.digest,
    );
    await Deno.remove(path);
    const repair = await runFts(["repair", "--json", "--data", join(dir, "b"), ...flags]);
    assert.equal(repair.code, 0, repair.stdout + repair.stderr);
    const report = JSON.parse(repair.stdout);
    assert.equal(report.failedCopies, 0, repair.stdout);
    assert.equal(report.copied, 1, repair.stdout);
  },
);

etcdTest(
  "writers quota in etcd: rm, mv and a replace change what counts; of 3 uploads at once where one fits, one lands",
  "fts-quota-etcd-",
  async (dir, etcd, hosts) => {
    const flags = ["--etcd", etcd.endpoints, "--cluster", "quota"];
    // One host: an rm frees every copy, as in the file store.
    hosts.push(
      await startEtcdHost({
        flags,
        host: "127.0.0.1",
        servers: 3,
        basePort: freePortRange(3),
        data: join(dir, "a"),
        extra: ["--part-size", "64KiB"],
      }),
    );
    await quotaScenario((args) => runFts([...args, ...flags]), dir);
  },
);

etcdTest(
  "writers in etcd: a forgotten host's key, allowed with no quota, is removed by fts writers rm and refused after",
  "fts-writers-host-",
  async (dir, etcd, hosts) => {
    const flags = ["--etcd", etcd.endpoints, "--cluster", "hostkey"];
    for (const i of [0, 1]) {
      hosts.push(await startLoopbackHost(i, { flags, dir, extra: ["--heal-after", "0"] }));
    }
    // Host 1 (127.0.0.3) joined with its own key: not the operator's, but always allowed.
    const hostKeyFile = join(dir, "host1", "operator_identity.json");
    const hostKey = (await runFts(["whoami", "--identity", hostKeyFile])).stdout.trim();
    const closed = await runFts(["writers", "closed", ...flags]);
    assert.equal(closed.code, 0, closed.stderr);
    assert.ok(closed.stdout.includes(`host ${hostKey}: always allowed`), closed.stdout);
    // Taken out of service for good.
    hosts[1]!.kill("SIGTERM");
    await hosts[1]!.status;
    const forgot = await runFts(["forget", "127.0.0.3", ...flags]);
    assert.equal(forgot.code, 0, forgot.stderr);

    const removed = await runFts(["writers", "rm", hostKey, ...flags]);
    assert.equal(removed.code, 0, removed.stderr);
    assert.ok(!removed.stdout.includes(hostKey), removed.stdout);
    await new Promise((r) => setTimeout(r, POLICY_REACH_MS));
    const src = join(dir, "f.bin");
    await writeRandomFile(src, 20 * KiB, 3);
    const refused = await runFts(["upload", src, ...flags, "--identity", hostKeyFile]);
    assert.equal(refused.code, 1, refused.stderr);
    assert.match(refused.stderr, /is not allowed to store parts on this cluster/);
    // The operator's own host is untouched.
    assert.match(closed.stdout, /^operator ed25519:\S+: always allowed/m);
  },
);
