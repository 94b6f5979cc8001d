/**
 * Healing around an instance whose disk stalls: the process lives and
 * answers, its directories still list (from memory, as a dying drive's or a
 * hung network mount's do), but reads of its parts never return. Its store
 * sits on a FUSE file system (tests/stalling_fs.py) whose reads and writes
 * wait while a flag file exists. The instance must find that out itself:
 * nothing errors, its operations just do not come back.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { assertSameFile, readManifestJson, startCluster, type TestCluster } from "./harness.ts";
import { settledCopies, waitUntil } from "./replicas.ts";
import { unusableTool } from "./missing_tool.ts";
import { Peer } from "../lib/client/peer.ts";
import { ProtocolError } from "../lib/wire/errors.ts";

const MiB = 1024 * 1024;
/** Generous bound for healing on a loaded 2-core machine; the heal itself takes seconds here. */
const HEAL_DEADLINE_MS = 90_000;
const PYTHON = "/usr/bin/python3";
const STALLING_FS = new URL("./stalling_fs.py", import.meta.url).pathname;

/** FUSE through python3-fusepy, mounted as root. */
const ignore = await unusableTool(
  "fusepy",
  async () => {
    if (Deno.uid() !== 0) return false;
    await Deno.stat("/dev/fuse");
    const { code } = await new Deno.Command(PYTHON, { args: ["-c", "import fusepy"] }).output();
    return code === 0;
  },
  "mounting a FUSE file system needs root and /dev/fuse",
);

/** A stalling FUSE mount of `backing` at `mountPoint`; stall() and answer() toggle it. */
async function _mountStalling(backing: string, mountPoint: string, flag: string) {
  const daemon = new Deno.Command(PYTHON, {
    args: [STALLING_FS, backing, mountPoint, flag],
    stdout: "null",
    stderr: "null",
  }).spawn();
  const stopDaemon = async () => {
    // Unmounted, it exits; a file still open on the mount would keep it: then it is killed.
    const timer = setTimeout(() => daemon.kill("SIGKILL"), 5_000);
    await daemon.status;
    clearTimeout(timer);
  };
  const deadline = Date.now() + 10_000;
  while (!(await Deno.readTextFile("/proc/self/mounts")).includes(` ${mountPoint} fuse`)) {
    if (Date.now() > deadline) {
      daemon.kill("SIGKILL");
      await daemon.status;
      throw new Error(`the FUSE file system did not mount at ${mountPoint}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return {
    stall: () => Deno.writeTextFile(flag, ""),
    answer: () => Deno.remove(flag).catch(() => {}),
    async unmount() {
      await Deno.remove(flag).catch(() => {});
      // Lazily: an instance may still hold a file of it open.
      const umount = await new Deno.Command("umount", { args: ["-l", mountPoint] }).output();
      if (!umount.success) daemon.kill("SIGKILL");
      await stopDaemon();
    },
  };
}

Deno.test({
  name:
    "cluster --heal-after 2s: an instance whose disk stalls (reads hang, listings answer) says so, is healed around and fails requests fast; once its disk answers, surplus copies go (R=2)",
  ignore,
  sanitizeResources: false,
  async fn() {
    let victim = 0;
    let firstDigest: string | undefined;
    let mount: Awaited<ReturnType<typeof _mountStalling>> | undefined;
    let cluster: TestCluster | undefined;
    try {
      cluster = await startCluster({
        servers: 4,
        replicas: 2,
        // Parts of 1 MiB, every one: served by reads handed to threads, which a stalled disk
        // holds. (A part of 64 KiB or less is read on the event loop, which the stalled disk
        // would hold instead: the instance then stops answering, another case.)
        partSize: "1MiB",
        files: { "s.bin": 6 * MiB },
        clusterArgs: ["--heal-after", "2s"],
        beforeStart: async (dir) => {
          const manifest = await readManifestJson(dir);
          victim = Number(manifest.files["s.bin"]!.parts[0]!.replicas[0]);
          firstDigest = manifest.files["s.bin"]!.parts[0]!.digest;
          // The victim's store moves behind the FUSE mount, at the same path (all of it:
          // its parts are renamed in from tmp/, which cannot cross file systems).
          const store = join(dir, "instances", String(victim));
          await Deno.rename(store, `${store}.disk`);
          await Deno.mkdir(store);
          mount = await _mountStalling(`${store}.disk`, store, join(dir, "..", "stall-flag"));
        },
      });
      const others = cluster.ports.filter((port) => port !== victim);
      await mount!.stall();
      // A read of the victim's that will hang (whatever copies the fetch below asks it for).
      const hung = await Peer.connect(`127.0.0.1:${victim}`);
      await hung.requestParts([{ digest: firstDigest!, offset: 0, length: MiB }]);

      // A fetch meanwhile: the victim's reads hang, the client goes to the other copies.
      const dest = join(cluster.work, "dest");
      await Deno.mkdir(dest);
      const fetch = await cluster.fts(["fetch", "s.bin", dest, "-q"]);
      assert.equal(fetch.code, 0, fetch.stderr);
      await assertSameFile(join(dest, "s.bin"), join(cluster.work, "src", "s.bin"));

      hung.close();
      // The reads left hanging tell the instance its disk stalled; its stats say so.
      await cluster.supervisor.waitFor(
        new RegExp(`instance ${victim} answers but its disk has not answered .*: down for healing`),
        HEAL_DEADLINE_MS,
      );
      // Status says so too: up, but serving no parts, and why.
      const status = await cluster.fts(["status"]);
      assert.match(
        status.stdout,
        new RegExp(`up but serving no parts: ${victim} \\(its disk has not answered for`),
      );
      // Requests that need the disk now fail at once, instead of hanging too.
      const peer = await Peer.connect(`127.0.0.1:${victim}`);
      try {
        await assert.rejects(
          peer.listParts(),
          (error: Error) =>
            error instanceof ProtocolError && error.code === "INTERNAL" &&
            /Part store stalled: its disk has not answered/.test(error.message),
        );
        await assert.rejects(peer.verifyPart(firstDigest!), /Part store stalled/);
      } finally {
        peer.close();
      }
      await waitUntil(
        () => settledCopies(cluster!.dir, others, 2),
        HEAL_DEADLINE_MS,
        "every part to have 2 good copies on the other instances, listed",
      );

      // The disk answers again: the instance serves, and each part ends with exactly R copies.
      await mount!.answer();
      await cluster.supervisor.waitFor(
        new RegExp(`instance ${victim} reads its parts again`),
        HEAL_DEADLINE_MS,
      );
      await waitUntil(
        () => settledCopies(cluster!.dir, cluster!.ports, 2),
        HEAL_DEADLINE_MS,
        "every part to have exactly 2 copies again",
      );
      const again = join(cluster.work, "again");
      await Deno.mkdir(again);
      const refetch = await cluster.fts(["fetch", "s.bin", again, "-q"]);
      assert.equal(refetch.code, 0, refetch.stderr);
      await assertSameFile(join(again, "s.bin"), join(cluster.work, "src", "s.bin"));
    } finally {
      // Answer before stopping (a process waiting on the stalled disk cannot even be killed),
      // and unmount before the cluster's directory goes (a mount point cannot be removed).
      await mount?.answer();
      await mount?.unmount();
      await cluster?.stop();
    }
  },
});
