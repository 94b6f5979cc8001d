/**
 * Freeing across hosts: a cluster in etcd on three loopback hosts (R=2, so
 * every part has copies on two of them): two run `fts cluster` (their
 * supervisors free for their instances), the third one `fts serve --store`
 * (the instance frees for itself). Deleting or replacing a file frees the
 * copies its parts left unused on every host, not only on the host whose
 * instance took the change, and keeps those another file still uses.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { freePortRange, FtsProcess, runFts, storedPartPath } from "./harness.ts";
import { putLoosePart } from "./part_signer.ts";
import { etcdTest, startLoopbackHost } from "./etcd_host.ts";
import { storedPartNames, waitUntil } from "./replicas.ts";

const PART = 64 * 1024;

/** The parts of file `name`, as `fts ls NAME --json` lists them. */
async function _parts(
  flags: string[],
  name: string,
): Promise<{ digest: string; replicas: string[] }[]> {
  const ls = await runFts(["ls", name, "--json", ...flags]);
  assert.equal(ls.code, 0, ls.stderr);
  return (JSON.parse(ls.stdout) as { parts: { digest: string; replicas: string[] }[] }).parts;
}

/** Hosts 0 and 1 (127.0.0.2 and .3), each `fts cluster` of 2 instances, R=2, healing off. */
async function _startHosts(dir: string, flags: string[], hosts: FtsProcess[]): Promise<void> {
  for (const i of [0, 1]) {
    const extra = ["--part-size", "64KiB", "--heal-after", "0"];
    hosts.push(await startLoopbackHost(i, { flags, dir, extra }));
  }
}

etcdTest(
  "etcd free: rm and a replace free the copies left unused on every host, shared ones stay",
  "fts-etcd-free-",
  async (dir, etcd, hosts) => {
    const flags = ["--etcd", etcd.endpoints, "--cluster", "free"];
    const me = ["--identity", join(dir, "id")];
    await _startHosts(dir, flags, hosts);
    const port = freePortRange(1);
    const alone = new FtsProcess([
      "serve",
      ...flags,
      ...["--host", "127.0.0.4", "--port", String(port), "--store", join(dir, "host2")],
    ]);
    hosts.push(alone);
    await alone.waitFor(/ready/, 30_000);
    // a.bin: 8 parts (so every host holds some); b.bin: a's first two parts, shared; c.bin, 16
    // parts of its own, to be replaced (a part misses the lone host about half the time: with 8
    // parts, 1 run in 160 found it holding none of them).
    const random = (bytes: number) => {
      const out = new Uint8Array(bytes);
      for (let at = 0; at < bytes; at += 65536) {
        crypto.getRandomValues(out.subarray(at, Math.min(bytes, at + 65536)));
      }
      return out;
    };
    const a = random(8 * PART - 1000);
    const upload = async (name: string, bytes: Uint8Array, extra: string[] = []) => {
      const path = join(dir, name);
      await Deno.writeFile(path, bytes);
      const up = await runFts(["upload", path, ...flags, ...me, "-q", ...extra]);
      assert.equal(up.code, 0, up.stderr);
    };
    await upload("a.bin", a);
    await upload("b.bin", a.slice(0, 2 * PART));
    await upload("c.bin", random(16 * PART));
    const parts = (name: string) => _parts(flags, name);
    const digests = async (name: string) => (await parts(name)).map((p) => p.digest);
    const aDigests = await digests("a.bin");
    const bDigests = await digests("b.bin");
    assert.deepEqual(bDigests, aDigests.slice(0, 2));
    const cDigests = await digests("c.bin");
    // Each digest's copies on every host: two, on two hosts (R=2, a failure domain each).
    const copies = async () => {
      const held = new Map<string, number>();
      for (const i of [0, 1, 2]) {
        for (const name of await storedPartNames(join(dir, `host${i}`))) {
          held.set(name, (held.get(name) ?? 0) + 1);
        }
      }
      return held;
    };
    const before = await copies();
    assert.deepEqual([...before.keys()].sort(), [...aDigests, ...cDigests].sort());
    for (const count of before.values()) assert.equal(count, 2);
    // Every host held some: the delete is taken on one and must reach the others.
    for (const i of [0, 1, 2]) {
      assert.ok((await storedPartNames(join(dir, `host${i}`))).length > 0);
    }
    const exactly = (wanted: string[]) => async () => {
      const held = await copies();
      const ok = [...held.keys()].sort().join() === [...wanted].sort().join() &&
        [...held.values()].every((count) => count === 2);
      return ok || `copies held: ${JSON.stringify(Object.fromEntries(held))}`;
    };

    // Taken by the instance that runs alone: both supervisors must free their hosts' copies.
    const removed = await runFts([
      "rm",
      "a.bin",
      ...flags,
      ...me,
      "--server",
      `127.0.0.4:${port}`,
    ]);
    assert.equal(removed.code, 0, removed.stderr);
    assert.match(removed.stdout, /6 parts no other file uses were freed/);
    assert.match(removed.stdout, /the other hosts free theirs as they hear of it/);
    await waitUntil(exactly([...bDigests, ...cDigests]), 15_000, "a.bin's copies freed");

    // A replace frees the old parts everywhere; the new ones stay. Published through an instance
    // of a supervised host: the one alone must free its own copies of the old parts.
    assert.ok(
      (await storedPartNames(join(dir, "host2"))).some((d) => cDigests.includes(d)),
      "the lone instance holds none of c.bin's parts",
    );
    const via = (await parts("c.bin")).flatMap((p) => p.replicas).find((id) =>
      !id.startsWith("127.0.0.4:")
    )!;
    const next = random(PART + 5);
    await upload("c.bin", next, ["--replace", "--server", via]);
    const nextDigests = await digests("c.bin");
    assert.equal(nextDigests.length, 2);
    await waitUntil(
      exactly([...bDigests, ...nextDigests]),
      15_000,
      "the replaced c.bin's copies freed",
    );
    // And the file is whole, from either host.
    const out = join(dir, "out");
    await Deno.mkdir(out);
    const fetched = await runFts(["fetch", "c.bin", out, ...flags]);
    assert.equal(fetched.code, 0, fetched.stderr);
    assert.deepEqual(await Deno.readFile(join(out, "c.bin")), next);
  },
);

etcdTest(
  "etcd free: an rm on one host racing an upload of the same bytes on the other never leaves a listed copy freed",
  "fts-etcd-free-race-",
  async (dir, etcd, hosts) => {
    const flags = ["--etcd", etcd.endpoints, "--cluster", "race"];
    const me = ["--identity", join(dir, "id")];
    await _startHosts(dir, flags, hosts);
    const hostDirOf = (id: string) => join(dir, id.startsWith("127.0.0.2:") ? "host0" : "host1");
    const listed = (name: string) => _parts(flags, name);
    for (let round = 0; round < 4; round++) {
      const bytes = new Uint8Array(4 * PART + round);
      for (let at = 0; at < bytes.length; at += 65536) {
        crypto.getRandomValues(bytes.subarray(at, Math.min(bytes.length, at + 65536)));
      }
      const source = join(dir, `src-${round}`);
      await Deno.writeFile(source, bytes);
      const a = `a-${round}.bin`;
      const b = `b-${round}.bin`;
      const up = await runFts(["upload", source, "--as", a, ...flags, ...me, "-q"]);
      assert.equal(up.code, 0, up.stderr);
      const ids = (await listed(a)).flatMap((p) => p.replicas);
      const on = (prefix: string) => ids.find((id) => id.startsWith(prefix))!;
      // The delete through the first host, the same bytes under another name through the second.
      const [removed, uploaded] = await Promise.all([
        runFts(["rm", a, ...flags, ...me, "--server", on("127.0.0.2:")]),
        runFts(["upload", source, "--as", b, ...flags, ...me, "-q", "--server", on("127.0.0.3:")]),
      ]);
      assert.equal(removed.code, 0, removed.stderr);
      assert.equal(uploaded.code, 0, uploaded.stderr);
      // Once every announcement is heard, each copy b's entry lists is on its instance's disk.
      await new Promise((resolve) => setTimeout(resolve, 1_500));
      for (const part of await listed(b)) {
        for (const id of part.replicas) {
          const port = id.slice(id.lastIndexOf(":") + 1);
          const path = storedPartPath(hostDirOf(id), port, part.digest);
          assert.ok(await Deno.stat(path).then(() => true, () => false), `round ${round}: ${path}`);
        }
      }
      const out = join(dir, `out-${round}`);
      await Deno.mkdir(out);
      const fetched = await runFts(["fetch", b, out, ...flags]);
      assert.equal(fetched.code, 0, fetched.stderr);
      assert.deepEqual(await Deno.readFile(join(out, b)), bytes);
    }
  },
);

etcdTest(
  "etcd free: a repair from a client has other hosts delete copies no file uses, untouched ones only",
  "fts-etcd-free-unused-",
  async (dir, etcd, hosts) => {
    const flags = ["--etcd", etcd.endpoints, "--cluster", "unused"];
    await _startHosts(dir, flags, hosts);
    // A published file (R=2: on both hosts) names the instances.
    const source = join(dir, "kept.bin");
    await Deno.writeFile(source, new Uint8Array(PART).fill(3));
    const up = await runFts(["upload", source, ...flags, "--identity", join(dir, "id"), "-q"]);
    assert.equal(up.code, 0, up.stderr);
    const replicas = (await _parts(flags, "kept.bin"))[0]!.replicas;
    const id = replicas.find((r) => r.startsWith("127.0.0.3:"))!;
    const port = id.slice(id.lastIndexOf(":") + 1);
    // Two parts of uploads that never published, on the second host: one stored two hours ago.
    const old = await putLoosePart([id], 20_000, 7);
    const young = await putLoosePart([id], 20_000, 8);
    const path = (digest: string) => storedPartPath(join(dir, "host1"), port, digest);
    const twoHoursAgo = new Date(Date.now() - 2 * 3600_000);
    await Deno.utime(path(old), twoHoursAgo, twoHoursAgo);
    const exists = (digest: string) => Deno.stat(path(digest)).then(() => true, () => false);
    // From a client with no data directory: both told to their host, which deletes the old one.
    const none = { env: { FTS_DATA: join(dir, "none") } };
    const repair = await runFts(["repair", ...flags, "--unused-after", "1h", "--json"], none);
    assert.equal(repair.code, 0, repair.stderr + repair.stdout);
    const report = JSON.parse(repair.stdout);
    assert.deepEqual(report.unusedElsewhere, { parts: 2, copies: 2, bytes: 40_000 });
    await waitUntil(async () => !(await exists(old)) || "still there", 15_000, "the old copy gone");
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    assert.ok(await exists(young), "a copy touched within --unused-after was deleted");
    // Said in words too, and the published file is whole.
    const again = await runFts(["repair", ...flags, "--unused-after", "1h"], none);
    assert.equal(again.code, 0, again.stderr);
    assert.match(
      again.stdout,
      /1 copy of 1 part no file uses on other hosts left to their hosts \(19\.5 KiB; each deleted there if untouched for 1h/,
    );
    assert.ok(await exists(young));
    const out = join(dir, "out");
    await Deno.mkdir(out);
    const fetched = await runFts(["fetch", "kept.bin", out, ...flags]);
    assert.equal(fetched.code, 0, fetched.stderr);
  },
);
