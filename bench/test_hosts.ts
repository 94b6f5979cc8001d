/**
 * Test hosts for multi-host tests: each host is a Linux network namespace with
 * one interface (eth0) on a bridge that lives in a namespace of its own, so a
 * link taken down in the bridge's namespace cuts a host off, and `ip netns pids`
 * finds every process "on" a host so a test can SIGKILL them all, as when a
 * machine dies. Namespace names carry the creating process's pid and a random
 * tag, and the subnet is random, so parallel test files never collide; names
 * left by a crashed earlier run (pid dead) are swept on the next create().
 *
 * Every process runs inside a namespace (`spawn`, `fts`, `fetch`): the test
 * process itself stays in the machine's namespace, which has no route to a
 * test host's address (the packet would leave the machine).
 *
 * Where namespaces cannot be made (not root, no `ip`), hosts fall back to
 * distinct loopback addresses 127.0.0.2, 127.0.0.3, ... (said once on stderr):
 * killHost() then kills the processes spawned on that host and their
 * descendants, and cutHost()/shape() are unsupported (cutUnsupported() is the
 * `ignore` value of tests that need them). FTS_TEST_HOSTS=loopback forces it.
 */
import { processAlive } from "../lib/base/fs_util.ts";
import { DrainedProcess } from "./drained_process.ts";
import { DENO, FtsProcess, type FtsSpawnOptions, runFts, type RunResult } from "./fts_process.ts";
import { findProgram } from "./peers.ts";
import { freePortRange } from "./port_claims.ts";
import { type HostAnswer, hostFetch, type HostRequest } from "./host_fetch.ts";

export type HostsMode = "netns" | "loopback";

/** Prefix of every namespace this module makes: `fts-t<pid>-<tag>-sw` and `...-h<i>`. */
const NAMESPACE_PREFIX = "fts-t";
const _OURS = /^fts-t(\d+)-[0-9a-f]+-(sw|h\d+)$/;
/** Host i's last address octet: .11, .12, ... as in DESIGN.md. */
const FIRST_HOST_OCTET = 11;
/** Most hosts one TestHosts may have (addresses .11 to .250). */
const MAX_HOSTS = 240;
/** Ports a test takes inside a namespace, where nothing else listens. */
const NAMESPACE_PORT_BASE = 7000;
/** Rounds of `ip netns pids` + SIGKILL before killHost() gives up on a forking host. */
const KILL_ROUNDS = 50;
/** Pause between those rounds, for the killed to exit. */
const KILL_ROUND_MS = 20;
/** Default timeout of a request made with fetch(). */
const FETCH_TIMEOUT_MS = 5_000;
/** tbf's bucket and queue for shape(): enough for a 1 Gbit/s link's timer tick. */
const SHAPE_BURST = "256kb";
const SHAPE_LATENCY = "50ms";
const HOST_FETCH_SCRIPT = new URL("./host_fetch.ts", import.meta.url).pathname;

let _mode: HostsMode | undefined;

function _run(program: string, args: string[]): { ok: boolean; out: string; err: string } {
  try {
    const output = new Deno.Command(program, { args, stdout: "piped", stderr: "piped" })
      .outputSync();
    const decoder = new TextDecoder();
    return {
      ok: output.success,
      out: decoder.decode(output.stdout),
      err: decoder.decode(output.stderr),
    };
  } catch (error) {
    return { ok: false, out: "", err: String(error) };
  }
}

function _ip(args: string[]): { ok: boolean; out: string; err: string } {
  return _run("ip", args);
}

/** Runs `program ARGS...` (ip unless told), throwing with its stderr on failure. */
function _must(args: string[], program = "ip"): string {
  const output = _run(program, args);
  if (!output.ok) throw new Error(`${program} ${args.join(" ")} failed: ${output.err.trim()}`);
  return output.out;
}

function _tag(): string {
  return crypto.getRandomValues(new Uint8Array(3)).reduce(
    (text, byte) => text + byte.toString(16).padStart(2, "0"),
    "",
  );
}

/**
 * How test hosts are made on this machine: network namespaces where this
 * process is root with `ip` and may create one, loopback addresses otherwise.
 */
export function hostsMode(): HostsMode {
  if (_mode !== undefined) return _mode;
  let why = "";
  if (Deno.env.get("FTS_TEST_HOSTS") === "loopback") why = "FTS_TEST_HOSTS=loopback";
  else if (Deno.uid() !== 0) why = "not root";
  else if (findProgram("ip") === undefined) why = "no ip command (Debian package iproute2)";
  else {
    const probe = `${NAMESPACE_PREFIX}${Deno.pid}-${_tag()}-h0`;
    const made = _ip(["netns", "add", probe]);
    if (made.ok) _ip(["netns", "del", probe]);
    else why = `ip netns add failed: ${made.err.trim()}`;
  }
  _mode = why === "" ? "netns" : "loopback";
  if (why !== "") {
    console.error(`test hosts: network namespaces unusable (${why}); hosts are loopback addresses`);
  }
  return _mode;
}

/** The `ignore` value of a test that cuts a host off or shapes its link: namespaces only. */
export function cutUnsupported(): boolean {
  if (hostsMode() === "netns") return false;
  console.error("ignored: cutting or shaping a host needs network namespaces (root and iproute2)");
  return true;
}

/** One test host. */
export interface TestHost {
  index: number;
  /** Its address: 10.a.b.(11+index) in a namespace, 127.0.0.(2+index) on loopback. */
  address: string;
  /** Its network namespace; "" on loopback. */
  namespace: string;
}

/** Options of spawn() and run(). */
export interface HostSpawnOptions {
  env?: Record<string, string>;
  cwd?: string;
}

/** Every TestHosts not yet closed, cleaned up when this module unloads. */
const _open = new Set<TestHosts>();
globalThis.addEventListener("unload", () => {
  for (const net of _open) net.closeSync();
});

export class TestHosts {
  readonly mode: HostsMode;
  readonly hosts: readonly TestHost[];
  /** The bridge's namespace; "" on loopback. */
  readonly switchNamespace: string;
  readonly #spawned = new Map<number, Set<DrainedProcess>>();
  #closing: Promise<void> | undefined;

  private constructor(mode: HostsMode, hosts: TestHost[], switchNamespace: string) {
    this.mode = mode;
    this.hosts = hosts;
    this.switchNamespace = switchNamespace;
    for (const host of hosts) this.#spawned.set(host.index, new Set());
    _open.add(this);
  }

  /** Makes `count` hosts on one bridge (or on loopback, see hostsMode()). */
  static create(count: number): Promise<TestHosts> {
    if (!Number.isInteger(count) || count < 1 || count > MAX_HOSTS) {
      throw new RangeError(`TestHosts.create: count must be 1 to ${MAX_HOSTS}, got ${count}`);
    }
    if (hostsMode() === "loopback") {
      const hosts = Array.from({ length: count }, (_, index) => ({
        index,
        address: `127.0.0.${2 + index}`,
        namespace: "",
      }));
      return Promise.resolve(new TestHosts("loopback", hosts, ""));
    }
    sweepStaleNamespaces();
    const stem = `${NAMESPACE_PREFIX}${Deno.pid}-${_tag()}`;
    const [a, b] = crypto.getRandomValues(new Uint8Array(2));
    const subnet = `10.${1 + (a! % 254)}.${b}`;
    const hosts = Array.from({ length: count }, (_, index) => ({
      index,
      address: `${subnet}.${FIRST_HOST_OCTET + index}`,
      namespace: `${stem}-h${index}`,
    }));
    const net = new TestHosts("netns", hosts, `${stem}-sw`);
    try {
      const sw = net.switchNamespace;
      _must(["netns", "add", sw]);
      _must(["-n", sw, "link", "add", "br0", "type", "bridge"]);
      _must(["-n", sw, "link", "set", "br0", "up"]);
      for (const host of hosts) {
        const ns = host.namespace;
        _must(["netns", "add", ns]);
        // Made inside the namespaces, the veth names never meet the machine's own.
        _must(["-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", `h${host.index}`]
          .concat(["netns", sw]));
        _must(["-n", sw, "link", "set", `h${host.index}`, "master", "br0", "up"]);
        _must(["-n", ns, "addr", "add", `${host.address}/24`, "dev", "eth0"]);
        _must(["-n", ns, "link", "set", "eth0", "up"]);
        _must(["-n", ns, "link", "set", "lo", "up"]);
      }
    } catch (error) {
      net.closeSync();
      throw error;
    }
    return Promise.resolve(net);
  }

  #host(i: number): TestHost {
    const host = this.hosts[i];
    if (host === undefined) throw new RangeError(`no test host ${i} (${this.hosts.length} hosts)`);
    return host;
  }

  /** The command prefix that runs a program on host i: `ip netns exec NS`, or nothing. */
  prefix(i: number): string[] {
    const host = this.#host(i);
    return host.namespace === "" ? [] : ["ip", "netns", "exec", host.namespace];
  }

  #track(i: number, process: DrainedProcess): void {
    const set = this.#spawned.get(i)!;
    set.add(process);
    process.status.then(() => set.delete(process));
  }

  /** Starts `cmd ARGS...` on host i, output drained; killHost(i) and close() kill it. */
  spawn(i: number, cmd: string, args: string[], options: HostSpawnOptions = {}): DrainedProcess {
    if (this.#closing) throw new Error("TestHosts.spawn after close()");
    const [program, ...before] = [...this.prefix(i), cmd];
    const child = new Deno.Command(program!, {
      args: [...before, ...args],
      ...(options.env ? { env: options.env } : {}),
      ...(options.cwd ? { cwd: options.cwd } : {}),
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const process = new DrainedProcess(child);
    this.#track(i, process);
    return process;
  }

  /** Runs `cmd ARGS...` on host i to completion. */
  run(i: number, cmd: string, args: string[], options: HostSpawnOptions = {}): Promise<RunResult> {
    return this.spawn(i, cmd, args, options).result();
  }

  /** Runs `fts ARGS...` on host i to completion (as runFts()). */
  fts(i: number, args: string[], options: FtsSpawnOptions & { timeoutMs?: number } = {}) {
    return runFts(args, { ...options, prefix: this.prefix(i) });
  }

  /** Starts a long-running `fts ARGS...` on host i (as FtsProcess). */
  spawnFts(i: number, args: string[], options: FtsSpawnOptions = {}): FtsProcess {
    if (this.#closing) throw new Error("TestHosts.spawnFts after close()");
    const process = new FtsProcess(args, { ...options, prefix: this.prefix(i) });
    this.#track(i, process);
    return process;
  }

  /** Runs a Deno script on host i with every permission. */
  deno(i: number, script: string, args: string[] = []): Promise<RunResult> {
    return this.run(i, DENO, ["run", "-A", "--quiet", script, ...args]);
  }

  /** An HTTP request made from inside host i (never throws: an error is an answer). */
  async fetch(
    i: number,
    url: string,
    init: { method?: string; json?: unknown; timeoutMs?: number } = {},
  ): Promise<HostAnswer> {
    const request: HostRequest = { url, ...init, timeoutMs: init.timeoutMs ?? FETCH_TIMEOUT_MS };
    if (this.mode === "loopback") return await hostFetch(request);
    const result = await this.deno(i, HOST_FETCH_SCRIPT, [JSON.stringify(request)]);
    if (result.code !== 0) return { error: `host_fetch.ts failed: ${result.stderr.trim()}` };
    return JSON.parse(result.stdout) as HostAnswer;
  }

  /**
   * A first port of `count` free ones on every host: a fixed base inside
   * namespaces (nothing else listens there), a claimed free range on loopback.
   */
  portRange(count: number): number {
    return this.mode === "netns" ? NAMESPACE_PORT_BASE : freePortRange(count);
  }

  /** SIGKILLs every process on host i, as if the machine died; returns how many. */
  async killHost(i: number): Promise<number> {
    const killed = this.#killHostSync(i);
    await Promise.all([...this.#spawned.get(i)!].map((process) => process.status));
    return killed;
  }

  #killHostSync(i: number): number {
    const host = this.#host(i);
    const killed = new Set<number>();
    for (let round = 0; round < KILL_ROUNDS; round++) {
      // A child just spawned may not have entered its namespace yet: killed by pid too.
      const spawned = [...this.#spawned.get(i)!].map((process) => process.pid);
      const pids = host.namespace === ""
        ? _withDescendants(spawned)
        : [...new Set([..._namespacePids(host.namespace), ...spawned])].filter(processAlive);
      if (pids.length === 0) return killed.size;
      for (const pid of pids) {
        try {
          Deno.kill(pid, "SIGKILL");
          killed.add(pid);
        } catch { /* gone meanwhile */ }
      }
      _sleepSync(KILL_ROUND_MS);
    }
    throw new Error(`killHost(${i}): processes still run on host ${host.address}`);
  }

  /** Takes host i's link down in the bridge's namespace: nothing reaches it, nothing leaves. */
  cutHost(i: number): void {
    this.#link(i, "down");
  }

  /** Brings host i's link back up. */
  restoreHost(i: number): void {
    this.#link(i, "up");
  }

  #link(i: number, state: "up" | "down"): void {
    this.#needNamespaces("cutHost/restoreHost");
    _must(["-n", this.switchNamespace, "link", "set", `h${this.#host(i).index}`, state]);
  }

  /** Limits what host i sends to `rateMbit` Mbit/s (tc tbf on its eth0). */
  shape(i: number, rateMbit: number): void {
    this.#needNamespaces("shape");
    _tbf(this.#host(i).namespace, "eth0", rateMbit);
  }

  /** Limits what host i receives to `rateMbit` Mbit/s (tc tbf on its bridge port). */
  shapeInbound(i: number, rateMbit: number): void {
    this.#needNamespaces("shapeInbound");
    _tbf(this.switchNamespace, `h${this.#host(i).index}`, rateMbit);
  }

  #needNamespaces(what: string): void {
    if (this.mode !== "netns") {
      throw new Error(`${what} needs network namespaces; these hosts are loopback addresses`);
    }
  }

  /** Kills every process on every host and deletes every namespace; idempotent. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.closeSync();
      const all = [...this.#spawned.values()].flatMap((set) => [...set]);
      await Promise.all(all.map((process) => process.status));
    })();
    return this.#closing;
  }

  /** close() without waiting for the children's exit to be reported: for unload. */
  closeSync(): void {
    if (!_open.delete(this)) return;
    for (const host of this.hosts) {
      try {
        this.#killHostSync(host.index);
      } catch { /* deleting the namespace below is what matters */ }
      if (host.namespace !== "") _ip(["netns", "del", host.namespace]);
    }
    if (this.switchNamespace !== "") _ip(["netns", "del", this.switchNamespace]);
  }
}

/** Makes `dev` in namespace `ns` send at most `rateMbit` Mbit/s. */
function _tbf(ns: string, dev: string, rateMbit: number): void {
  if (!(rateMbit > 0)) throw new RangeError(`shape: rateMbit must be positive, got ${rateMbit}`);
  const tbf = ["tbf", "rate", `${rateMbit}mbit`, "burst", SHAPE_BURST, "latency", SHAPE_LATENCY];
  _must(["-n", ns, "qdisc", "replace", "dev", dev, "root", ...tbf], "tc");
}

/** Blocks this thread: killing must also work in an unload handler, where nothing awaits. */
function _sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** The pids in namespace `ns`. */
function _namespacePids(ns: string): number[] {
  const listed = _ip(["netns", "pids", ns]);
  if (!listed.ok) return [];
  return listed.out.split("\n").filter((line) => line.trim() !== "").map(Number);
}

/** `roots` and every live descendant of them, read from /proc. */
function _withDescendants(roots: number[]): number[] {
  const children = new Map<number, number[]>();
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      const stat = Deno.readTextFileSync(`/proc/${entry.name}/stat`);
      const parent = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      children.set(parent, [...(children.get(parent) ?? []), Number(entry.name)]);
    } catch { /* exited meanwhile */ }
  }
  const found = new Set<number>();
  const queue = roots.filter(processAlive);
  while (queue.length > 0) {
    const pid = queue.pop()!;
    if (found.has(pid)) continue;
    found.add(pid);
    queue.push(...(children.get(pid) ?? []));
  }
  return [...found];
}

/**
 * Deletes namespaces this module made in a process that is gone (a test run
 * that crashed or was killed before close()), killing what still runs in them.
 * Returns their names.
 */
export function sweepStaleNamespaces(): string[] {
  const listed = _ip(["netns", "list"]);
  if (!listed.ok) return [];
  const swept: string[] = [];
  for (const line of listed.out.split("\n")) {
    const name = line.split(" ")[0] ?? "";
    const match = name.match(_OURS);
    if (!match || processAlive(Number(match[1]))) continue;
    for (const pid of _namespacePids(name)) {
      try {
        Deno.kill(pid, "SIGKILL");
      } catch { /* gone */ }
    }
    if (_ip(["netns", "del", name]).ok) swept.push(name);
  }
  return swept;
}
