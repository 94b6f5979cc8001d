import assert from "node:assert/strict";
import { join } from "node:path";
import { ProtocolError } from "../lib/wire/errors.ts";
import { manifestFilesText } from "./manifest_util.ts";
import { actionHint, errorLine } from "../lib/ui/hints.ts";
import { notFoundMessage } from "../lib/client/locate.ts";
import {
  assertSameFile,
  DENO,
  freePortRange,
  FtsProcess,
  MAIN,
  runFts,
  startCluster,
  tempDir,
  writeRandomFile,
} from "./harness.ts";
import { unusableTool } from "./missing_tool.ts";

const MiB = 1024 * 1024;

function _lines(text: string): string[] {
  return text.split("\n").filter((line) => line.length > 0);
}

Deno.test("errorLine() adds what to do, found down the cause chain", () => {
  const full = new Error("Cannot save the state", {
    cause: Object.assign(new Error("No space left on device (os error 28)"), { code: "ENOSPC" }),
  });
  assert.match(errorLine(full), /^Cannot save the state; the disk is full: free some space/);
  const notYours = new ProtocolError(
    "NOT_YOURS",
    'Cannot delete "a.bin": it belongs to ed25519:abc, not to ed25519:def',
  );
  assert.match(errorLine(notYours), /; only the file's owner may change it: act as the owner/);
  const operators = new ProtocolError(
    "NOT_YOURS",
    'Cannot delete "movie.mkv": it belongs to operator, not to ed25519:def',
  );
  assert.match(
    errorLine(operators),
    /; it is the operator's \(fts preload stored it\): pass --operator/,
  );
  const taken = new ProtocolError("ALREADY_EXISTS", 'A file named "a.bin" already exists');
  assert.match(errorLine(taken), /if that file is yours upload with --replace/);
  // A message that already says what to do is left alone.
  const said = new Error("The disk is full; free some space and run it again", { cause: full });
  assert.equal(errorLine(said), said.message);
  // A refusal that is not about the key or the clock gets no advice to check them.
  for (
    const message of [
      'Signed file.rename of "a" is for content 0123..., but the file now holds 4567... (it changed since the request was signed); run the command again',
      "Signed request was already used (replay refused); sign a new one",
    ]
  ) {
    assert.equal(errorLine(new ProtocolError("UNAUTHORIZED", message)), message);
  }
  assert.equal(actionHint(new Error("something else")), undefined);
});

Deno.test("notFoundMessage() suggests the nearest name, or how to list or add files", () => {
  assert.equal(
    notFoundMessage("movei.mkv", ["movie.mkv", "other.iso"]),
    'No file named "movei.mkv" in the cluster; did you mean "movie.mkv"? (fts ls lists the files)',
  );
  assert.match(notFoundMessage("zzz", ["movie.mkv"]), /run fts ls to see the one file it holds/);
  assert.match(notFoundMessage("zzz", []), /holds no files yet \(fts preload FILE adds one\)/);
});

Deno.test("fetch: cluster down: one line naming what to do; --verbose gives the causes", async () => {
  const work = await tempDir();
  try {
    const { data } = await _preloaded(work, "d.bin", 100_000);
    const down = await runFts(["fetch", "d.bin", work, "--data", data, "--timeout", "1s"]);
    assert.equal(down.code, 1);
    const [line, ...rest] = _lines(down.stderr);
    assert.deepEqual(rest, [], "one line");
    assert.match(
      line!,
      /^fts fetch: Cannot reach any of the 3 servers \(127\.0\.0\.1:\d+ and 2 more\): is the cluster up\? Start it with "fts cluster --data (\S+)", or pass --server HOST:PORT of a live instance \(--verbose for the cause\)$/,
    );
    // The command that starts this very cluster, not a default one elsewhere.
    assert.equal(/--data (\S+)"/.exec(line!)![1], data);
    const verbose = await runFts(["fetch", "d.bin", work, "--data", data, "--verbose"]);
    assert.equal(verbose.code, 1);
    assert.match(verbose.stderr, /caused by: 127\.0\.0\.1:\d+: .*refused/i);
    const json = await runFts(["fetch", "d.bin", work, "--data", data, "--json"]);
    assert.equal(json.code, 1);
    const reply = JSON.parse(json.stdout);
    assert.equal(reply.ok, false);
    assert.match(reply.error, /Cannot reach any of the 3 servers/);
    assert.ok(reply.causes.length >= 1);
  } finally {
    await Deno.remove(work, { recursive: true });
  }
});

Deno.test("repair and scrub: cluster down: say so, call nothing lost, change nothing", async () => {
  const work = await tempDir();
  try {
    const { data } = await _preloaded(work, "r.bin", 100_000);
    const manifest = await manifestFilesText(data);
    for (const command of ["repair", "scrub"]) {
      const down = await runFts([command, "--data", data]);
      assert.equal(down.code, 1, down.stderr);
      assert.doesNotMatch(down.stdout + down.stderr, /LOST/);
      assert.match(
        down.stderr,
        /No instance of the cluster answers \(127\.0\.0\.1:\d+ and 2 more\): is it running\?/,
      );
      assert.ok(down.stderr.includes(`Start it with "fts cluster --data ${data}"`), down.stderr);
    }
    assert.equal(await manifestFilesText(data), manifest);
  } finally {
    await Deno.remove(work, { recursive: true });
  }
});

Deno.test("commands that take no argument refuse one, before acting: repair dry-run repairs nothing", async () => {
  const work = await tempDir();
  try {
    const { data, file, setup } = await _preloaded(work, "x.bin", 50_000);
    // A copy to be made, were repair to run.
    const manifest = await manifestFilesText(data);
    const repair = await runFts(["repair", "dry-run", "--data", data]);
    assert.equal(repair.code, 2, repair.stderr);
    assert.match(
      repair.stderr,
      /^fts repair: Unexpected argument "dry-run"; did you mean --dry-run\? usage: fts repair/,
    );
    for (const command of ["scrub", "status", "cluster"]) {
      const extra = await runFts([command, "extra", "--data", data]);
      assert.equal(extra.code, 2, `${command}: ${extra.stderr}`);
      assert.match(extra.stderr, new RegExp(`^fts ${command}: Unexpected argument "extra"; usage`));
    }
    const serve = await runFts(["serve", "extra", "--port", "0", "--data", data]);
    assert.equal(serve.code, 2, serve.stderr);
    assert.equal(await manifestFilesText(data), manifest);

    // FTS_ETCD exported for another cluster does not take over a --data naming this one.
    const env = { FTS_ETCD: "http://127.0.0.1:9" };
    for (const command of [["ls"], ["status"], ["preload", file, "--as", "y.bin"]]) {
      const crossed = await runFts([...command, "--data", data], { env });
      assert.equal(crossed.code, 2, crossed.stderr);
      assert.match(
        crossed.stderr,
        /holds a single-host cluster, but FTS_ETCD \(http:\/\/127\.0\.0\.1:9\)/,
      );
    }
    // FTS_DATA naming a file: the message names FTS_DATA, not a --data nobody gave.
    const fromEnv = await runFts(["ls"], { env: { FTS_DATA: file } });
    assert.equal(fromEnv.code, 2, fromEnv.stderr);
    assert.match(fromEnv.stderr, /^fts ls: FTS_DATA .*x\.bin is not a directory/);
    // --data naming a file: one line saying so, for every command (not a raw lstat error).
    for (const command of [["cluster"], ["preload", file]]) {
      const onFile = await runFts([...command, "--data", file]);
      assert.equal(onFile.code, 2, onFile.stderr);
      assert.match(onFile.stderr, /--data .*x\.bin is not a directory: give the cluster's data/);
    }
    const garbage = await runFts(["ls"], { env: { FTS_ETCD: "garbage" } });
    assert.equal(garbage.code, 2, garbage.stderr);
    assert.match(
      garbage.stderr,
      /^fts ls: FTS_ETCD "garbage" is not a URL/,
      "names where it came from",
    );
    // Moving that cluster into etcd is what migrate is for: it gets past that check.
    const migrate = await runFts(["migrate", "--data", data, "--host", "127.0.0.1"], { env });
    assert.doesNotMatch(migrate.stderr, /holds a single-host cluster/);
    assert.equal(await manifestFilesText(data), manifest);
    // An empty --data (an unset shell variable) is not the current directory;
    // an empty FTS_DATA is no FTS_DATA.
    const here = join(work, "here");
    await Deno.mkdir(here);
    const emptyFlag = await runFts(["preload", file, ...setup.slice(0, -2), "--data", ""], {
      cwd: here,
    });
    assert.equal(emptyFlag.code, 2, emptyFlag.stderr);
    assert.match(emptyFlag.stderr, /^fts preload: --data needs a directory/);
    const emptyEnv = await runFts(["preload", file, ...setup.slice(0, -2), "--quiet"], {
      cwd: here,
      env: { FTS_DATA: "" },
    });
    assert.equal(emptyEnv.code, 0, emptyEnv.stderr);
    assert.deepEqual([...Deno.readDirSync(here)].map((entry) => entry.name), ["fts-data"]);
  } finally {
    await Deno.remove(work, { recursive: true });
  }
});

Deno.test("--host: an address this machine lacks is refused before anything is recorded", async () => {
  const work = await tempDir();
  try {
    const file = join(work, "h.bin");
    await writeRandomFile(file, 10_000);
    const base = String(freePortRange(2));
    const setup = ["--servers", "2", "--base-port", base, "--replicas", "1", "--quiet"];
    // 192.0.2.1 is TEST-NET-1 (RFC 5737): no machine has it.
    for (const host of ["192.0.2.1", "999.0.0.1", "not a host!"]) {
      const data = join(work, "data");
      const preload = await runFts(["preload", file, ...setup, "--data", data, "--host", host]);
      assert.equal(preload.code, 2, preload.stderr);
      assert.ok(
        preload.stderr.startsWith(`fts preload: --host ${host} is not an address of this machine`),
        preload.stderr,
      );
      assert.equal(await Deno.stat(data).catch(() => undefined), undefined, "nothing recorded");
    }
    const data = join(work, "old");
    assert.equal((await runFts(["preload", file, ...setup, "--data", data])).code, 0);
    // An instance outside the cluster's ports is refused: its store would be one nothing uses.
    const outside = String(Number(base) + 2);
    const stray = await runFts(["serve", "--data", data, "--port", outside]);
    assert.equal(stray.code, 2, stray.stderr);
    assert.match(stray.stderr, new RegExp(`Port ${outside} is not one of the instances .*ports`));
    assert.equal(
      await Deno.stat(join(data, "instances", outside)).catch(() => undefined),
      undefined,
      "an instance directory was made",
    );
    // One recorded by an older fts: the cluster names the address, not a "port in use".
    const configPath = join(data, "config.json");
    const config = JSON.parse(await Deno.readTextFile(configPath));
    await Deno.writeTextFile(configPath, JSON.stringify({ ...config, host: "192.0.2.1" }));
    const cluster = await runFts(["cluster", "--data", data]);
    assert.equal(cluster.code, 1, cluster.stderr);
    assert.match(cluster.stderr, /192\.0\.2\.1 is not an address of this machine/);
    assert.doesNotMatch(cluster.stderr, /in use/);
    const gateway = await runFts(["gateway", "--data", data, "--port", "0", "--host", "999.1.1.1"]);
    assert.equal(gateway.code, 2, gateway.stderr);
    assert.match(gateway.stderr, /--host 999\.1\.1\.1 is not an address of this machine/);
    // A gateway is only a listener: IPv6 (where this machine has it) is fine for one.
    if (_listens("::1")) {
      const six = new FtsProcess(["gateway", "--data", data, "--port", "0", "--host", "::1"]);
      try {
        await six.waitFor(/ready: http:\/\/\[::1\]:\d+\//);
      } finally {
        six.kill("SIGTERM");
        await six.status;
      }
    }
    // An instance refused for etcd's reasons (none answers) leaves no part store behind.
    const store = join(work, "store");
    const noEtcd = await runFts([
      "serve",
      ...["--etcd", "http://127.0.0.1:9", "--host", "127.0.0.2", "--port", "0", "--store", store],
    ]);
    assert.equal(noEtcd.code, 1, noEtcd.stderr);
    assert.match(noEtcd.stderr, /etcd is unavailable/);
    assert.equal(await Deno.stat(store).catch(() => undefined), undefined, "a store was made");
    // A port taken is a failure (exit 1), as for serve and cluster, not bad usage.
    const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    try {
      const port = String((taken.addr as Deno.NetAddr).port);
      const busy = await runFts(["gateway", "--data", data, "--port", port]);
      assert.equal(busy.code, 1, busy.stderr);
      assert.match(busy.stderr, /is in use: pick another with --port/);
    } finally {
      taken.close();
    }
    // A connection timeout of 0 (or 1 ms) would cut off every exchange: refused.
    for (
      const args of [
        ["gateway", "--data", data, "--port", "0", "--write-timeout", "0"],
        ["gateway", "--data", data, "--port", "0", "--header-timeout", "1ms"],
        ["serve", "--data", data, "--port", "0", "--idle-timeout", "0"],
        ["serve", "--data", data, "--port", "0", "--request-timeout", "10ms"],
      ]
    ) {
      const refused = await runFts(args);
      assert.equal(refused.code, 2, `${args.join(" ")}: ${refused.stderr}`);
      assert.match(refused.stderr, /must be at least 100ms/);
    }
  } finally {
    await Deno.remove(work, { recursive: true });
  }
});

Deno.test("fetch: a name the cluster does not hold gets the nearest name, in one line", async () => {
  const cluster = await startCluster({ servers: 3, replicas: 2, files: { "movie.bin": 50_000 } });
  try {
    const typo = await cluster.fts(["fetch", "movei.bin", cluster.work]);
    assert.equal(typo.code, 1);
    assert.deepEqual(_lines(typo.stderr), [
      'fts fetch: No file named "movei.bin" in the cluster; did you mean "movie.bin"? (fts ls lists the files)',
    ]);
    const far = await cluster.fts(["fetch", "quarterly-report.pdf", cluster.work]);
    assert.equal(far.code, 1);
    assert.match(far.stderr, /No file named "quarterly-report\.pdf" in the cluster; run fts ls/);
  } finally {
    await cluster.stop();
  }
});

Deno.test("fetch, ls, scrub: bad destinations, arguments, names and rates get one clear line each", async () => {
  const cluster = await startCluster({
    servers: 2,
    replicas: 1,
    files: { "a.bin": 20_000, "b.bin": 30_000 },
  });
  try {
    const file = join(cluster.work, "plain-file");
    await Deno.writeTextFile(file, "not a directory");
    const intoFile = await cluster.fts(["fetch", "a.bin", file]);
    assert.equal(intoFile.code, 1);
    assert.deepEqual(_lines(intoFile.stderr), [
      `fts fetch: Destination ${file} is not a directory`,
    ]);
    // A destination that does not exist yet is made (as wget -P does); one that cannot be is
    // said once by a batch, before listing the cluster, not once a file.
    const missing = join(cluster.work, "missing", "deeper");
    const made = await cluster.fts(["fetch", "--all", missing, "-q"]);
    assert.equal(made.code, 0, made.stderr);
    assert.deepEqual([...Deno.readDirSync(missing)].map((e) => e.name).sort(), ["a.bin", "b.bin"]);
    const single = join(cluster.work, "single");
    const one = await cluster.fts(["fetch", "a.bin", single, "-q"]);
    assert.equal(one.code, 0, one.stderr);
    const underFile = join(file, "sub");
    const batch = await cluster.fts(["fetch", "--all", underFile]);
    assert.equal(batch.code, 1);
    assert.equal(_lines(batch.stderr).length, 1, batch.stderr);
    assert.match(batch.stderr, /^fts fetch: Cannot (create|use) the destination .*plain-file\/sub/);
    // The usage of fetch is two lines: printed as two, not escaped into one.
    const extra = await cluster.fts(["fetch", "a.bin", cluster.work, "extra"]);
    assert.equal(extra.code, 2);
    assert.doesNotMatch(extra.stderr, /\\x0a/);
    assert.match(
      extra.stderr,
      /^fts fetch: Too many arguments; usage: fts fetch NAME .*\n {7}fts fetch \(--all/,
    );
    // A destination that is a link to nothing is named as one.
    const dangling = join(cluster.work, "dangling");
    await Deno.symlink(join(cluster.work, "nowhere"), dangling);
    const broken = await cluster.fts(["fetch", "a.bin", dangling]);
    assert.equal(broken.code, 1, broken.stderr);
    assert.match(broken.stderr, /dangling is a symbolic link to nothing \(.*nowhere\)/);
    // "-" is not a directory to make (nor standard output).
    const dash = await cluster.fts(["fetch", "a.bin", "-"], { cwd: cluster.work });
    assert.equal(dash.code, 2, dash.stderr);
    assert.match(dash.stderr, /not to standard output \(-\)/);
    assert.equal(await Deno.stat(join(cluster.work, "-")).catch(() => undefined), undefined);
    // `fts gateway 9000` (a port typed without --port) starts nothing on the default port.
    const gatewayExtra = await cluster.fts(["gateway", "9000"]);
    assert.equal(gatewayExtra.code, 2, gatewayExtra.stderr);
    assert.match(gatewayExtra.stderr, /^fts gateway: Unexpected argument "9000"; usage/);
    // An empty list of names fetches nothing, and says so (not "the cluster holds no files").
    const noNames = await cluster.fts(["fetch", "--names-from", "/dev/null", cluster.work]);
    assert.equal(noNames.code, 0, noNames.stderr);
    assert.equal(noNames.stdout.trim(), "no names to fetch");
    // A rate that would take hours a part is refused (0 is no limit).
    const slow = await cluster.fts(["scrub", "--hash-rate", "1"]);
    assert.equal(slow.code, 2);
    assert.match(slow.stderr, /--hash-rate must be 0 \(no limit\) or at least 1KiB/);
    // A stall timeout of 0 would wait on a silent instance forever.
    for (const command of [["fetch", "a.bin", cluster.work], ["upload", file]]) {
      const never = await cluster.fts([...command, "--timeout", "0"]);
      assert.equal(never.code, 2, never.stderr);
      assert.match(never.stderr, /--timeout must be at least 100ms/);
    }
    // Every command that takes --etcd says so in its usage.
    for (const command of ["fetch", "upload", "rm", "mv"]) {
      const help = await cluster.fts([command, "--help"]);
      assert.match(help.stdout, /--etcd URLS \[--cluster NAME\]/, command);
    }
    // An empty DEST_DIR is a mistake, not "here".
    const emptyDest = await cluster.fts(["fetch", "a.bin", ""]);
    assert.equal(emptyDest.code, 2);
    assert.match(emptyDest.stderr, /DEST_DIR is empty/);
    // Not holding a file is no usage error, from the manifest or over the network alike.
    const ls = await cluster.fts(["ls", "nosuch.bin"]);
    assert.equal(ls.code, 1, ls.stderr);
    // A batch with a failed file does not say every part was verified.
    const dest = join(cluster.work, "dest");
    await Deno.mkdir(join(dest, "b.bin"), { recursive: true });
    const partly = await cluster.fts(["fetch", "--all", dest]);
    assert.equal(partly.code, 1);
    assert.match(partly.stdout, /^fetched 1 of 2 files .*; 1 failed, /m);
    assert.doesNotMatch(partly.stdout, /every part verified/);
  } finally {
    await cluster.stop();
  }
});

Deno.test("rm: a file of another owner: one line saying whose it is and what to do", async () => {
  const cluster = await startCluster({ servers: 3, replicas: 2, files: { "o.bin": 50_000 } });
  try {
    const identity = join(cluster.work, "someone-else.json");
    // A key that does not exist yet owns nothing: rm says so, and makes none.
    const unknown = await cluster.fts(["rm", "o.bin", "--identity", identity]);
    assert.equal(unknown.code, 2, unknown.stderr);
    assert.match(unknown.stderr, /^fts rm: No identity file .*someone-else\.json: only the key/);
    assert.equal(await Deno.stat(identity).catch(() => undefined), undefined);
    const mv = await cluster.fts(["mv", "o.bin", "p.bin", "--identity", identity]);
    assert.equal(mv.code, 2, mv.stderr);
    for (const command of [["whoami"], ["upload", join(cluster.work, "src", "o.bin")]]) {
      const empty = await cluster.fts([...command, "--identity", ""]);
      assert.equal(empty.code, 2, empty.stderr);
      assert.match(empty.stderr, /--identity needs a FILE/);
    }
    assert.equal((await cluster.fts(["whoami", "--identity", identity])).code, 0);
    const rm = await cluster.fts(["rm", "o.bin", "--identity", identity]);
    assert.equal(rm.code, 1);
    const lines = _lines(rm.stderr).filter((l) => l.startsWith("fts rm:"));
    assert.equal(lines.length, 1, rm.stderr);
    assert.match(
      lines[0]!,
      /^fts rm: Cannot delete "o\.bin": it belongs to operator, not to ed25519:\S+; it is the operator's \(fts preload stored it\): pass --operator, on the cluster's host \(or one holding its operator_identity\.json\)$/,
    );
    const ls = await cluster.fts(["ls"]);
    assert.match(ls.stdout, /o\.bin/, "nothing was deleted");
  } finally {
    await cluster.stop();
  }
});

/** Whether this machine lets us mount a small tmpfs in a private mount namespace. */
/** Runs `sh -c script sh ARGS...` as root of a user and mount namespace of its own (a tmpfs disk). */
async function _inOwnMounts(
  script: string,
  ...args: string[]
): Promise<{ stdout: string; stderr: string }> {
  const output = await new Deno.Command("unshare", {
    args: ["-rm", "sh", "-c", script, "sh", ...args],
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  return { stdout: decoder.decode(output.stdout), stderr: decoder.decode(output.stderr) };
}

async function _canMountTmpfs(): Promise<boolean> {
  const probe = await new Deno.Command("unshare", {
    args: ["-rm", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt && umount /mnt"],
    stdout: "null",
    stderr: "null",
  }).output();
  return probe.success;
}

Deno.test({
  name:
    "fetch --all: destination disk full: the batch stops there, a line per file under way, not one per file",
  ignore: await unusableTool("unshare", _canMountTmpfs, "no user namespace may mount a tmpfs"),
  fn: async () => {
    const files: Record<string, number> = {};
    for (let i = 0; i < 60; i++) files[`f${String(i).padStart(2, "0")}.bin`] = 60_000;
    const cluster = await startCluster({ servers: 3, replicas: 2, files });
    try {
      const disk = join(cluster.work, "small-disk");
      await Deno.mkdir(disk);
      // 3.6 MB of files onto a 1 MiB disk, 4 files at a time.
      const fetch =
        `"${DENO}" run -A --quiet "${MAIN}" fetch --all "$1" --files 4 --json --data "${cluster.dir}"`;
      const script = [`mount -t tmpfs -o size=1m tmpfs "$1"`, `${fetch}; echo "code=$?" >&2`]
        .join("\n");
      const { stdout, stderr } = await _inOwnMounts(script, disk);
      assert.match(stderr, /code=1/, stderr);
      const lines = _lines(stderr).filter((l) => l.startsWith("fts fetch:"));
      assert.ok(lines.length >= 1 && lines.length <= 4, stderr);
      assert.match(lines[0]!, /is full/);
      const report = JSON.parse(stdout);
      assert.equal(report.filesFetched + report.filesFailed, 60);
      assert.ok(report.filesFailed > 40, stdout);
      const skipped = report.files.filter((f: { error?: string }) =>
        /^not fetched: /.test(f.error ?? "")
      );
      assert.ok(skipped.length > 30, stdout);
    } finally {
      await cluster.stop();
    }
  },
});

Deno.test({
  name:
    "fetch: destination disk full (ENOSPC): says so in one line; freeing space and rerunning resumes",
  ignore: await unusableTool("unshare", _canMountTmpfs, "no user namespace may mount a tmpfs"),
  fn: async () => {
    const cluster = await startCluster({
      servers: 3,
      replicas: 2,
      partSize: "256KiB",
      files: { "big.bin": 2 * MiB },
    });
    try {
      const disk = join(cluster.work, "small-disk");
      await Deno.mkdir(disk);
      const fetch = `"${DENO}" run -A --quiet "${MAIN}" fetch big.bin "$1" --data "${cluster.dir}"`;
      // A 3 MiB disk with 1.5 MiB taken: the 2 MiB file does not fit until the filler goes.
      const script = [
        `mount -t tmpfs -o size=3m tmpfs "$1"`,
        `head -c 1572864 /dev/zero > "$1/filler"`,
        `${fetch}; echo "first=$?"`,
        `rm "$1/filler"`,
        `${fetch}; echo "second=$?"`,
        `cp "$1/big.bin" "$2/copy.bin"`,
      ].join("\n");
      const { stdout, stderr } = await _inOwnMounts(script, disk, cluster.work);
      assert.match(stdout, /first=1/, stdout + stderr);
      const full = _lines(stderr).filter((l) => l.startsWith("fts fetch:"));
      assert.equal(full.length, 1, stderr);
      assert.match(
        full[0]!,
        /^fts fetch: The disk holding .*small-disk is full; free some space or choose another DEST_DIR, then run the same command again to resume/,
      );
      assert.match(stdout, /second=0/, stdout + stderr);
      assert.match(stdout, /fetched big\.bin .*\(\d+ present, \d+ fetched/);
      assert.ok(!/\(0 present/.test(stdout.split("\n").find((l) => l.startsWith("fetched"))!));
      await assertSameFile(join(cluster.work, "copy.bin"), join(cluster.work, "src", "big.bin"));
    } finally {
      await cluster.stop();
    }
  },
});

/**
 * A cluster of 3 instances (R=2) in `work`/data holding one preloaded file
 * `name` of `size` bytes, not started; `setup` is the flags that made it.
 */
async function _preloaded(work: string, name: string, size: number) {
  const data = join(work, "data");
  const file = join(work, name);
  await writeRandomFile(file, size);
  const base = String(freePortRange(3));
  const setup = ["--servers", "3", "--base-port", base, "--replicas", "2", "--data", data];
  assert.equal((await runFts(["preload", file, ...setup, "--quiet"])).code, 0);
  return { data, file, setup };
}

/** Whether this machine can listen on `hostname` (IPv6 may be off). */
function _listens(hostname: string): boolean {
  try {
    Deno.listen({ hostname, port: 0 }).close();
    return true;
  } catch {
    return false;
  }
}

Deno.test("errors: standard output that cannot be written is one line and exit 1, blaming neither disk nor file", async () => {
  const work = await tempDir();
  const dir = join(work, "data");
  const source = join(work, "a.bin");
  await writeRandomFile(source, 5_000, 8);
  const setup = ["--servers", "2", "--replicas", "1", "--base-port", String(freePortRange(2))];
  assert.equal((await runFts(["preload", source, "--data", dir, ...setup])).code, 0);
  // /dev/full: every write fails with "No space left on device".
  const full = { prefix: ["sh", "-c", 'exec "$0" "$@" > /dev/full'] };
  for (
    const args of [["--version"], ["help"], ["fetch", "--help"], ["ls", "--data", dir], [
      "ls",
      "--json",
      "--data",
      dir,
    ]]
  ) {
    const result = await runFts(args, full);
    assert.equal(result.code, 1, `${args.join(" ")}: ${result.stderr}`);
    assert.match(
      result.stderr,
      /^fts(?: \w+)?: cannot write to standard output: No space left on device \(os error 28\)\n$/,
      args.join(" "),
    );
  }
  await Deno.remove(work, { recursive: true });
});
