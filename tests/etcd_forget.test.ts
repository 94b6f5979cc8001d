/**
 * `fts forget`: a host of a cluster in etcd gone for good leaves the
 * membership once nothing is lost by it. Two hosts on loopback addresses
 * (127.0.0.2 and 127.0.0.3, R=2, no healing): forgetting a host that is up,
 * or whose copies the manifest still lists, is refused and changes nothing;
 * after a repair copied its parts to the other host, it is forgotten, and
 * started again it joins again.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { EtcdProcess } from "../bench/etcd_process.ts";
import { missingTool } from "./missing_tool.ts";
import { freePortRange, type FtsProcess, runFts } from "./harness.ts";
import { startEtcdHost } from "./etcd_host.ts";

const SERVERS = 3;

Deno.test({
  name: "etcd forget: refused while up or listed; after a repair the host is forgotten, rejoins",
  ignore: missingTool("etcd"),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "fts-etcd-forget-" });
    const etcd = await EtcdProcess.start({ addresses: ["127.0.0.1"] });
    const hosts: (FtsProcess | undefined)[] = [];
    const flags = ["--etcd", etcd.endpoints, "--cluster", "forget"];
    const ports = [freePortRange(SERVERS), freePortRange(SERVERS)];
    const start = async (i: number) =>
      hosts[i] = await startEtcdHost({
        flags,
        host: `127.0.0.${i + 2}`,
        servers: SERVERS,
        basePort: ports[i]!,
        data: join(dir, `host${i}`),
        // Host 0's supervisor watches who is down but heals only after the test.
        extra: ["--part-size", "64KiB", "--heal-after", i === 0 ? "1h" : "0"],
      });
    /** The members `fts status` shows, and those host 0's healing counts as down. */
    const members = async (): Promise<{ ids: string[]; down: string[] }> => {
      const status = await runFts(["status", "--json", ...flags, "--data", join(dir, "host0")]);
      assert.equal(status.code, 0, status.stderr);
      const report = JSON.parse(status.stdout) as {
        instances: { id: string }[];
        healing: { down: { id: string }[] };
      };
      return {
        ids: report.instances.map((instance) => instance.id).sort(),
        down: report.healing.down.map((d) => d.id).sort(),
      };
    };
    const gone = "127.0.0.3";
    const goneIds = Array.from({ length: SERVERS }, (_, i) => `${gone}:${ports[1]! + i}`);
    try {
      await start(0);
      await start(1);
      const source = join(dir, "f.bin");
      const bytes = new Uint8Array(300_000);
      for (let at = 0; at < bytes.length; at += 65536) {
        crypto.getRandomValues(bytes.subarray(at, at + 65536));
      }
      await Deno.writeFile(source, bytes);
      const up = await runFts(["upload", source, ...flags, "--identity", join(dir, "id"), "-q"]);
      assert.equal(up.code, 0, up.stderr);
      const everyone = (await members()).ids;
      assert.equal(everyone.length, 2 * SERVERS);

      const alive = await runFts(["forget", gone, ...flags]);
      assert.equal(alive.code, 1, alive.stderr);
      assert.match(alive.stderr, new RegExp(`${goneIds.join(", ")} are up: stop them first`));
      const unknown = await runFts(["forget", "127.0.0.9", ...flags]);
      assert.equal(unknown.code, 1, unknown.stderr);
      assert.match(
        unknown.stderr,
        /No member of cluster "forget" is 127\.0\.0\.9 \(its hosts: 127\.0\.0\.2, 127\.0\.0\.3\)/,
      );
      const noEtcd = await runFts(["forget", gone, "--data", join(dir, "host0")]);
      assert.equal(noEtcd.code, 2, noEtcd.stderr);
      assert.match(noEtcd.stderr, /only a cluster in etcd has members to forget/);

      // The host stops for good; no healing: the manifest still lists copies there.
      hosts[1]!.kill("SIGTERM");
      await hosts[1]!.status;
      const listed = await runFts(["forget", gone, ...flags]);
      assert.equal(listed.code, 1, listed.stderr);
      assert.match(
        listed.stderr,
        /parts? of 1 file \(f\.bin\) still lists? a copy on 127\.0\.0\.3:/,
      );
      // Down for host 0's healing within its member poll (a second).
      await _until(async () => (await members()).down.length === SERVERS);
      assert.deepEqual(await members(), { ids: everyone, down: goneIds });

      // A repair makes the copies again on the host left and drops the gone ones from the entry.
      const repair = await runFts(["repair", ...flags, "--data", join(dir, "host0"), "-q"]);
      assert.equal(repair.code, 0, repair.stderr + repair.stdout);
      const forgot = await runFts(["forget", gone, ...flags]);
      assert.equal(forgot.code, 0, forgot.stderr);
      assert.equal(forgot.stdout.trim(), `forgot 3 instances: ${goneIds.join(", ")}`);
      // Gone from the membership, and from what host 0's healing waits for.
      await _until(async () => (await members()).down.length === 0);
      assert.deepEqual(await members(), {
        ids: everyone.filter((id) => !id.startsWith(`${gone}:`)),
        down: [],
      });
      const again = await runFts(["forget", `${gone}:${ports[1]}`, ...flags]);
      assert.equal(again.code, 1, again.stderr);
      assert.match(
        again.stderr,
        /No member of cluster "forget" is 127\.0\.0\.3:\d+ \(its hosts: 127\.0\.0\.2\)/,
      );
      const out = join(dir, "out");
      await Deno.mkdir(out);
      const got = await runFts(["fetch", "f.bin", out, ...flags, "-q"]);
      assert.equal(got.code, 0, got.stderr);
      assert.deepEqual(await Deno.readFile(join(out, "f.bin")), bytes);

      // Started again, the host joins again.
      await start(1);
      assert.deepEqual(await members(), { ids: everyone, down: [] });
    } finally {
      for (const host of hosts) {
        host?.kill("SIGTERM");
        await host?.status;
      }
      await etcd.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

/** Waits up to 10 s for `done` to hold. */
async function _until(done: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!await done()) {
    assert.ok(Date.now() < deadline, "timed out");
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}
