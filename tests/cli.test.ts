import assert from "node:assert/strict";
import { join } from "node:path";
import {
  freePortRange,
  FtsProcess,
  readManifestJson,
  runFts,
  startCluster,
  tempDir,
  writeRandomFile,
} from "./harness.ts";

Deno.test("cli: unknown command exits 2 with a suggestion", async () => {
  const result = await runFts(["fecth"]);
  assert.equal(result.code, 2);
  assert.match(result.stderr, /unknown command "fecth"; did you mean "fetch"/);
});

Deno.test("cli: unknown flag and missing arguments exit 2", async () => {
  const dir = await tempDir();
  try {
    const flag = await runFts(["fetch", "x", "--bogus", "--data", dir]);
    assert.equal(flag.code, 2);
    assert.match(flag.stderr, /--bogus/);
    const missing = await runFts(["fetch", "--data", dir]);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /Missing argument/);
    const kill = await runFts(["kill", "notaport", "--data", dir]);
    assert.equal(kill.code, 2);
    const notes = join(dir, "notes.txt");
    await Deno.writeTextFile(notes, "a file, not a data directory");
    const notDir = await runFts(["status", "--data", notes]);
    assert.equal(notDir.code, 2, notDir.stderr);
    assert.match(notDir.stderr, /--data .*notes\.txt is not a directory/);
    const interval = await runFts(["status", "--interval", "2s", "--data", dir]);
    assert.equal(interval.code, 2, interval.stderr);
    assert.match(interval.stderr, /--interval sets how often --watch polls/);
    // Rates an instance or healing could not work with: refused before the data directory is made.
    const data = join(dir, "data");
    for (
      const [flag, said] of [
        [["--limit-rate", "512"], /--limit-rate must be at least 1KiB/],
        [["--heal-rate", "1"], /--heal-rate must be 0 \(no limit\) or at least 1KiB/],
      ] as const
    ) {
      const cluster = await runFts([
        "cluster",
        "--data",
        data,
        "--servers",
        "2",
        "--plain",
        ...flag,
      ]);
      assert.equal(cluster.code, 2, cluster.stderr);
      assert.match(cluster.stderr, said);
      await assert.rejects(Deno.stat(data), Deno.errors.NotFound);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("cli: --help and --version", async () => {
  const help = await runFts(["--help"]);
  assert.equal(help.code, 0);
  for (const name of ["serve", "preload", "cluster", "fetch", "kill", "start", "ls", "status"]) {
    assert.match(help.stdout, new RegExp(`\\b${name}\\b`));
  }
  const sub = await runFts(["fetch", "--help"]);
  assert.equal(sub.code, 0);
  assert.match(sub.stdout, /fts fetch NAME \[DEST_DIR\]/);
  const version = await runFts(["--version"]);
  assert.match(version.stdout, /^fts \d+\.\d+\.\d+/);
});

Deno.test("cli: fetch without a cluster says how to point at one", async () => {
  const dir = await tempDir();
  try {
    const result = await runFts(["fetch", "a.bin", dir, "--data", join(dir, "none")]);
    assert.equal(result.code, 2);
    assert.match(result.stderr, /No cluster in .* --server HOST:PORT/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("cli: preload refuses a second file of the same name unless --replace, and contradicting flags", async () => {
  const dir = await tempDir();
  try {
    const data = join(dir, "data");
    const file = join(dir, "a.bin");
    await writeRandomFile(file, 100_000);
    const base = String(freePortRange(4));
    const setup = ["--servers", "4", "--base-port", base, "--replicas", "2", "--data", data];
    assert.equal((await runFts(["preload", file, ...setup])).code, 0);
    const again = await runFts(["preload", file, "--data", data]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /already in the cluster; pass --replace/);
    // One new name for two files of one command is said as such.
    await Deno.mkdir(join(dir, "sub"));
    for (const path of [join(dir, "b.bin"), join(dir, "sub", "b.bin")]) {
      await writeRandomFile(path, 1000);
    }
    const twice = await runFts([
      "preload",
      join(dir, "b.bin"),
      join(dir, "sub", "b.bin"),
      "--data",
      data,
    ]);
    assert.equal(twice.code, 1);
    assert.match(twice.stderr, /The name "b\.bin" is given to two files/);
    await writeRandomFile(file, 50_000, 9);
    const replaced = await runFts(["preload", file, "--replace", "--data", data]);
    assert.equal(replaced.code, 0, replaced.stderr);
    assert.equal((await readManifestJson(data)).files["a.bin"]!.size, 50_000);
    const contradict = await runFts([
      "preload",
      file,
      "--replace",
      "--replicas",
      "3",
      "--data",
      data,
    ]);
    // Flags that cannot make a cluster leave no data directory behind.
    const none = join(dir, "never");
    const invalid = await runFts([
      "preload",
      file,
      "--data",
      none,
      "--servers",
      "3",
      "--replicas",
      "5",
    ]);
    assert.equal(invalid.code, 2, invalid.stderr);
    assert.ok(!(await Deno.stat(none).then(() => true, () => false)), `${none} was created`);
    assert.equal(contradict.code, 2);
    assert.match(
      contradict.stderr,
      /--replicas 3 contradicts the cluster recorded in .* \(--replicas 2\)/,
    );
    const badSize = await runFts([
      "preload",
      file,
      "--replace",
      "--part-size",
      "8XB",
      "--data",
      data,
    ]);
    assert.equal(badSize.code, 2);
    assert.match(badSize.stderr, /unknown unit "XB"/);
    // The cluster's config exists now; a --part-size for one file is held to the same limits.
    for (const size of ["1", "1GiB", "4095"]) {
      const outOfRange = await runFts([
        "preload",
        file,
        "--as",
        `odd-${size}.bin`,
        "--part-size",
        size,
        "--data",
        data,
      ]);
      assert.equal(outOfRange.code, 2, outOfRange.stderr);
      assert.match(outOfRange.stderr, /--part-size must be 4\.0 KiB\.\.256 MiB, got \d+/);
      // Not a figure that reads as one of the bounds.
      assert.doesNotMatch(outOfRange.stderr, /got (4\.0 KiB|256 MiB)/);
      assert.equal((await readManifestJson(data)).files[`odd-${size}.bin`], undefined);
    }
    const missingFile = await runFts(["preload", join(dir, "nope.bin"), "--data", data]);
    assert.equal(missingFile.code, 2);
    assert.match(missingFile.stderr, /Cannot read .*nope\.bin/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("cli: concurrent preloads into one data directory lose no entry", async () => {
  const dir = await tempDir();
  try {
    const data = join(dir, "data");
    const base = String(freePortRange(5));
    const setup = ["--servers", "5", "--base-port", base, "--replicas", "2", "--data", data];
    assert.equal(
      (await runFts(["preload", ...setup, ...(await _file(dir, "seed.bin", 0))])).code,
      0,
    );
    const names = Array.from({ length: 8 }, (_, i) => `f${i}.bin`);
    const results = await Promise.all(
      names.map(async (name, i) =>
        runFts(["preload", ...(await _file(dir, name, i + 1)), "--data", data])
      ),
    );
    for (const result of results) assert.equal(result.code, 0, result.stderr);
    const manifest = await readManifestJson(data);
    assert.deepEqual(Object.keys(manifest.files).sort(), ["seed.bin", ...names].sort());
    assert.equal(manifest.generation, 1 + names.length);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

async function _file(dir: string, name: string, seed: number): Promise<string[]> {
  const path = join(dir, name);
  await writeRandomFile(path, 300_000 + seed * 1000, seed + 1);
  return [path];
}

Deno.test("cli: kill, start, status and ls against a running cluster", async () => {
  const cluster = await startCluster({ servers: 4, replicas: 2, files: { "k.bin": 600_000 } });
  try {
    const port = cluster.ports[2]!;
    assert.equal((await cluster.fts(["kill", String(port)])).code, 0);
    await cluster.supervisor.waitFor(new RegExp(`instance ${port} down \\(killed by SIGKILL\\)`));
    const again = await cluster.fts(["kill", String(port)]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, new RegExp(`Instance ${port} is already down`));
    const unknown = await cluster.fts(["kill", "1"]);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /Port 1 is not an instance of the cluster/);

    // Under-replicated is not a failure: every part still has a live copy.
    const degraded = await cluster.fts(["status", "--json"]);
    assert.equal(degraded.code, 0, degraded.stderr);
    const status = JSON.parse(degraded.stdout);
    assert.deepEqual(
      status.instances.filter((i: { up: boolean }) => !i.up).map((i: { id: string }) => i.id),
      [String(port)],
    );
    assert.equal(status.files[0].name, "k.bin");
    assert.ok(status.files[0].minLiveReplicas >= 1 && status.files[0].minLiveReplicas <= 2);

    // Its port taken meanwhile by another program: start says what the instance said.
    const squatter = Deno.listen({ hostname: "127.0.0.1", port });
    try {
      const blocked = await cluster.fts(["start", String(port)]);
      assert.equal(blocked.code, 1, blocked.stderr);
      assert.match(
        blocked.stderr,
        new RegExp(
          `exited before it was ready: fts serve: Port ${port} on 127.0.0.1 is already in use`,
        ),
      );
      assert.doesNotMatch(blocked.stderr, /--verbose for the cause.*--verbose for the cause/);
    } finally {
      squatter.close();
    }
    assert.equal((await cluster.fts(["start", String(port)])).code, 0);
    await cluster.supervisor.waitFor(new RegExp(`instance ${port} up`));
    const up = await cluster.fts(["start", String(port)]);
    assert.equal(up.code, 1);
    assert.match(up.stderr, /already up/);
    const healthy = JSON.parse((await cluster.fts(["status", "--json"])).stdout);
    assert.equal(healthy.files[0].minLiveReplicas, 2);

    // Every copy of part 0 down: the report says LOST, and status exits 1 after it.
    const entry = JSON.parse((await cluster.fts(["ls", "k.bin", "--json"])).stdout);
    const holders: string[] = entry.parts[0].replicas;
    for (const id of holders) assert.equal((await cluster.fts(["kill", id])).code, 0);
    for (const id of holders) {
      await cluster.supervisor.waitFor(new RegExp(`instance ${id} down \\(killed by SIGKILL\\)`));
    }
    const lost = await cluster.fts(["status"]);
    assert.equal(lost.code, 1, lost.stdout + lost.stderr);
    assert.match(
      lost.stdout,
      /k\.bin .*LOST: 1 part has no live replica \(part 0\)|k\.bin .*LOST: \d+ parts have/,
    );
    const lostJson = await cluster.fts(["status", "--json"]);
    assert.equal(lostJson.code, 1);
    assert.ok(JSON.parse(lostJson.stdout).files[0].lostParts >= 1);
    for (const id of holders) assert.equal((await cluster.fts(["start", id])).code, 0);
    for (const id of holders) await cluster.supervisor.waitFor(new RegExp(`instance ${id} up`));
    assert.equal((await cluster.fts(["status"])).code, 0);

    const ls = await cluster.fts(["ls"]);
    assert.match(ls.stdout, /k\.bin\s+586 KiB\s+3\s+operator/);
    const remote = await runFts(["ls", "--server", `127.0.0.1:${cluster.ports[0]}`, "--json"]);
    assert.equal(JSON.parse(remote.stdout)[0].name, "k.bin");
    const missing = await cluster.fts(["fetch", "nope.bin", cluster.work]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /No file named "nope\.bin" in the cluster/);
  } finally {
    await cluster.stop();
  }
});

Deno.test("cli: fetch from a client with only --server (no data directory)", async () => {
  const cluster = await startCluster({ servers: 4, replicas: 2, files: { "r.bin": 700_000 } });
  try {
    const dest = join(cluster.work, "remote");
    await Deno.mkdir(dest);
    const result = await runFts([
      "fetch",
      "r.bin",
      dest,
      "--server",
      `127.0.0.1:${cluster.ports[1]}`,
      "--data",
      join(cluster.work, "no-such-dir"),
    ]);
    assert.equal(result.code, 0, result.stderr);
    const viaEnv = await runFts(["fetch", "r.bin", dest, "--data", join(cluster.work, "none")], {
      env: { FTS_SERVERS: `127.0.0.1:${cluster.ports[3]}` },
    });
    assert.equal(viaEnv.code, 0, viaEnv.stderr);
  } finally {
    await cluster.stop();
  }
});

Deno.test("cli: cluster stops every instance on SIGTERM and leaves no process behind", async () => {
  const cluster = await startCluster({ servers: 4, replicas: 2 });
  const pids = await Promise.all(
    cluster.ports.map(async (port) =>
      Number(await Deno.readTextFile(join(cluster.dir, "run", `${port}.pid`)))
    ),
  );
  cluster.supervisor.kill("SIGTERM");
  const status = await cluster.supervisor.status;
  assert.equal(status.code, 0);
  for (const pid of pids) {
    assert.ok(!(await _alive(pid)), `instance pid ${pid} outlived the cluster`);
  }
  // Nothing runs: status says so, not "every instance down, every file LOST".
  const stopped = await cluster.fts(["status"]);
  assert.equal(stopped.code, 1, stopped.stdout);
  assert.match(stopped.stderr, /No instance of the cluster answers .*: is it running\? Start it/);
  // With this cluster's --data: the default directory's cluster is another one.
  assert.ok(stopped.stderr.includes(`"fts cluster --data ${cluster.dir}"`), stopped.stderr);
  assert.doesNotMatch(stopped.stdout, /LOST/);
  // The record a crashed supervisor leaves, its pid now another process's (here init, always
  // alive): no supervisor holds the lock, so no cluster runs, and a new one starts.
  await Deno.writeTextFile(
    join(cluster.dir, "run", "cluster.json"),
    JSON.stringify({ pid: 1, controlPort: 9 }),
  );
  const stale = await cluster.fts(["status"]);
  assert.equal(stale.code, 1, stale.stdout + stale.stderr);
  assert.match(stale.stderr, /No instance of the cluster answers .*: is it running\?/);
  // With no lock file at all (a supervisor makes it before it records itself): the same.
  await Deno.remove(join(cluster.dir, "run", "supervisor.lock"));
  const unlocked = await cluster.fts(["status"]);
  assert.match(unlocked.stderr, /No instance of the cluster answers .*: is it running\?/);
  const again = new FtsProcess(["cluster", "--data", cluster.dir, "--plain"]);
  await again.waitFor(/ready/);
  again.kill("SIGTERM");
  assert.equal((await again.status).code, 0);
  await cluster.stop();
});

Deno.test("cli: instances and the --http gateway exit when their supervisor is SIGKILLed", async () => {
  const cluster = await startCluster({ servers: 3, replicas: 2, clusterArgs: ["--http", "0"] });
  const pids = await Promise.all(
    cluster.ports.map(async (port) =>
      Number(await Deno.readTextFile(join(cluster.dir, "run", `${port}.pid`)))
    ),
  );
  const gateway = await cluster.supervisor.waitFor(/HTTP gateway at http:\/\/[^/]+:(\d+)\//);
  const gatewayPort = Number(gateway[1]);
  cluster.supervisor.kill("SIGKILL");
  await cluster.supervisor.status;
  const listening = async () => {
    try {
      (await Deno.connect({ hostname: "127.0.0.1", port: gatewayPort })).close();
      return true;
    } catch {
      return false;
    }
  };
  const deadline = Date.now() + 10_000;
  while (
    Date.now() < deadline &&
    ((await Promise.all(pids.map(_alive))).some((a) => a) || await listening())
  ) {
    await new Promise((r) => setTimeout(r, 100));
  }
  for (const pid of pids) assert.ok(!(await _alive(pid)), `orphan instance pid ${pid}`);
  assert.ok(!(await listening()), `the gateway on port ${gatewayPort} outlived its supervisor`);
  await cluster.stop();
});

Deno.test("cli: SIGHUP (a closed terminal) stops a cluster cleanly, unless started with it ignored (nohup)", async () => {
  const cluster = await startCluster({ servers: 2, replicas: 1 });
  try {
    cluster.supervisor.kill("SIGHUP");
    const result = await cluster.supervisor.result();
    assert.equal(result.code, 0, result.stdout + result.stderr);
    assert.match(result.stdout, /all instances stopped/);
    // As nohup starts it: SIGHUP ignored from the start, and so it stays.
    const nohup = new FtsProcess(["cluster", "--data", cluster.dir, "--plain"], {
      prefix: ["sh", "-c", 'trap "" HUP; exec "$@"', "sh"],
    });
    await nohup.waitFor(/ready/);
    nohup.kill("SIGHUP");
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal((await cluster.fts(["status"])).code, 0, "the cluster stopped on SIGHUP");
    nohup.kill("SIGTERM");
    assert.equal((await nohup.result()).code, 0);
  } finally {
    await cluster.stop();
  }
});

Deno.test("cli: a cluster started right after its supervisor was SIGKILLed waits for the orphans to exit", async () => {
  const cluster = await startCluster({ servers: 3, replicas: 2 });
  cluster.supervisor.kill("SIGKILL");
  await cluster.supervisor.status;
  // At once: the old instances are still up, about to notice their parent is gone.
  const again = new FtsProcess(["cluster", "--data", cluster.dir, "--plain"]);
  try {
    await again.waitFor(/ready: 3 instances/);
  } finally {
    again.kill("SIGTERM");
    const result = await again.result();
    assert.equal(result.code, 0, result.stdout + result.stderr);
    await cluster.stop();
  }
});

async function _alive(pid: number): Promise<boolean> {
  try {
    const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
    return !/\) [ZX] /.test(stat);
  } catch {
    return false;
  }
}

Deno.test("cli: two clusters started at once on one data directory: one runs, the other says so", async () => {
  const cluster = await startCluster({ servers: 3, replicas: 2 });
  let current = cluster.supervisor;
  try {
    const args = ["cluster", "--data", cluster.dir, "--plain", "--heal-after", "0"];
    for (let round = 1; round <= 3; round++) {
      await _stopSupervisor(current);
      const both = [new FtsProcess(args), new FtsProcess(args)];
      // One prints ready, the other exits with "already running"; never both fail.
      const outcomes = await Promise.all(both.map(async (p) => {
        const first = await Promise.race([
          p.waitFor(/fts cluster: ready/, 60_000).then(() => "ready"),
          p.status.then(() => "exited"),
        ]);
        return first;
      }));
      const running = both[outcomes.indexOf("ready")];
      const refused = both[outcomes.indexOf("exited")];
      assert.ok(running && refused, `round ${round}: ${outcomes.join(", ")}`);
      assert.equal((await refused.status).code, 1);
      assert.match(refused.stderr, /A cluster is already running for /);
      current = running;
    }
  } finally {
    current.kill("SIGTERM");
    await current.status;
    await cluster.stop();
  }
});

/** SIGTERMs a cluster's supervisor and waits for it and its instances to be gone. */
async function _stopSupervisor(supervisor: FtsProcess): Promise<void> {
  supervisor.kill("SIGTERM");
  assert.equal((await supervisor.status).code, 0);
}

Deno.test("cli: Ctrl-C while the instances start: 'interrupted', exit 130, no process left", async () => {
  const work = await tempDir();
  const dir = join(work, "data");
  const source = join(work, "a.bin");
  await writeRandomFile(source, 100_000, 3);
  const base = freePortRange(6);
  const setup = ["--data", dir, "--servers", "6", "--base-port", String(base)];
  const preload = await runFts(["preload", source, ...setup, "--replicas", "2"]);
  assert.equal(preload.code, 0, preload.stderr);
  const supervisor = new FtsProcess(["cluster", "--data", dir, "--plain"]);
  // The first instance has started (its pid file is there); not all listen yet.
  const pids = join(dir, "run");
  while (true) {
    const started = await Array.fromAsync(Deno.readDir(pids)).catch(() => []);
    if (started.some((entry) => /^\d+\.pid$/.test(entry.name))) break;
    await new Promise((r) => setTimeout(r, 5));
  }
  supervisor.kill("SIGINT");
  const result = await supervisor.result();
  assert.equal(result.code, 130, result.stdout + result.stderr);
  assert.match(result.stderr, /^fts cluster: interrupted$/m);
  assert.doesNotMatch(result.stdout + result.stderr, /failed to start/);
  assert.deepEqual(await _processesNaming(dir), [], "processes outlived the cluster");
  await Deno.remove(work, { recursive: true });
});

Deno.test("cli: Ctrl-C during preload publishes nothing, leaves no temporary copy; run again, it finishes", async () => {
  const work = await tempDir();
  const dir = join(work, "data");
  const source = join(work, "big.bin");
  await writeRandomFile(source, 128 * 1024 * 1024, 5);
  const setup = ["--data", dir, "--servers", "3", "--replicas", "2", "--part-size", "1MiB"];
  const preload = new FtsProcess([
    "preload",
    source,
    ...setup,
    "--base-port",
    String(freePortRange(3)),
  ]);
  const names = (path: string) =>
    Array.fromAsync(Deno.readDir(path), (entry) => entry.name).catch(() => [] as string[]);
  // Some parts are stored, most are not.
  const stored = async () => {
    let count = 0;
    for (const instance of await names(join(dir, "instances"))) {
      const parts = join(dir, "instances", instance, "parts");
      for (const prefix of await names(parts)) count += (await names(join(parts, prefix))).length;
    }
    return count;
  };
  while ((await stored()) < 2) await new Promise((r) => setTimeout(r, 5));
  preload.kill("SIGINT");
  const result = await preload.result();
  assert.equal(result.code, 130, result.stdout + result.stderr);
  assert.match(
    result.stderr,
    /^fts preload: interrupted with 0 of 1 file stored, nothing published: the same command skips the parts already stored$/m,
  );
  assert.deepEqual(Object.keys((await readManifestJson(dir)).files), []);
  const temporary: string[] = [];
  for (const instance of await names(join(dir, "instances"))) {
    temporary.push(...await names(join(dir, "instances", instance, "tmp")));
  }
  assert.deepEqual(temporary, [], "temporary copies left behind");
  const again = await runFts(["preload", source, "--data", dir]);
  assert.equal(again.code, 0, again.stderr);
  assert.equal((await readManifestJson(dir)).files["big.bin"]?.size, 128 * 1024 * 1024);
  await Deno.remove(work, { recursive: true });
});

/** Live processes whose command line names `text` (Linux: from /proc). */
async function _processesNaming(text: string): Promise<string[]> {
  const found: string[] = [];
  for await (const entry of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      const cmdline = (await Deno.readTextFile(`/proc/${entry.name}/cmdline`)).replaceAll(
        "\0",
        " ",
      );
      if (cmdline.includes(text) && (await _alive(Number(entry.name)))) found.push(cmdline);
    } catch { /* gone meanwhile */ }
  }
  return found;
}

Deno.test("cli: cluster --http on an instance's port or one in use says so in its one line, and starts nothing", async () => {
  const work = await tempDir();
  const dir = join(work, "data");
  const source = join(work, "a.bin");
  await writeRandomFile(source, 10_000, 4);
  const [base, http] = [freePortRange(2), freePortRange(1)];
  const setup = ["--data", dir, "--servers", "2", "--base-port", String(base)];
  assert.equal((await runFts(["preload", source, ...setup, "--replicas", "1"])).code, 0);
  // One of the instances' own ports: refused before anything starts.
  const own = await runFts(["cluster", "--data", dir, "--plain", "--http", String(base + 1)]);
  assert.equal(own.code, 2, own.stderr);
  assert.match(own.stderr, /is one of the instances' ports/);
  // A new directory: refused before its config is recorded.
  const fresh = join(work, "fresh");
  const mistyped = await runFts([
    "cluster",
    "--data",
    fresh,
    "--servers",
    "2",
    "--base-port",
    String(base),
    "--http",
    String(base),
  ]);
  assert.equal(mistyped.code, 2, mistyped.stderr);
  await assert.rejects(Deno.stat(fresh), Deno.errors.NotFound);
  // --verify is the gateway's: without --http it is refused, nothing started.
  const lone = await runFts(["cluster", "--data", dir, "--plain", "--verify"]);
  assert.equal(lone.code, 2, lone.stderr);
  assert.match(lone.stderr, /--verify is for the HTTP gateway .*give --http PORT too/);
  assert.equal(lone.stderr.trim().split("\n").length, 1, lone.stderr);
  const taken = Deno.listen({ hostname: "127.0.0.1", port: http });
  try {
    const result = await runFts(["cluster", "--data", dir, "--plain", "--http", String(http)]);
    assert.equal(result.code, 1, result.stdout + result.stderr);
    assert.match(
      result.stderr,
      new RegExp(`HTTP gateway did not start on port ${http}: Port ${http} .* is in use.*--http`),
    );
    // The cause hint once, not the gateway's and then the cluster's own.
    assert.equal(result.stderr.split("(--verbose for the cause)").length - 1, 1, result.stderr);
    assert.deepEqual(await _processesNaming(dir), []);
  } finally {
    taken.close();
    await Deno.remove(work, { recursive: true });
  }
});
