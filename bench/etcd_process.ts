/**
 * A real etcd for tests: one member or a cluster of several, each member on a
 * loopback address or inside a test host (bench/test_hosts.ts), data in a
 * temporary directory. Members can be SIGKILLed and restarted on the same data,
 * as a machine or process dies and comes back. Requests to etcd (health, the
 * v3 JSON gateway) are made from where the members live: inside a test host's
 * namespace when they run in one, since the test process has no route there.
 */
import { join } from "node:path";
import { DrainedProcess } from "./drained_process.ts";
import { freePortRange } from "./port_claims.ts";
import type { HostAnswer } from "./host_fetch.ts";
import { hostFetch } from "./host_fetch.ts";
import type { TestHosts } from "./test_hosts.ts";

/** etcd's usual ports: free inside a test host's namespace, where nothing else listens. */
const CLIENT_PORT = 2379;
const PEER_PORT = 2380;
/** How long start() and restart() wait for every running member to report healthy. */
const HEALTHY_TIMEOUT_MS = 30_000;
const HEALTH_POLL_MS = 200;
/** Timeout of one request made with request(), put() or get(). */
const REQUEST_TIMEOUT_MS = 5_000;
/** Raft timing: etcd's defaults, named so a test can reason about failover time. */
const HEARTBEAT_MS = 100;
const ELECTION_MS = 1_000;

export interface EtcdOptions {
  /** Members: 1 (default) or more (3 for a quorum that survives one loss). */
  members?: number;
  /** Run member k inside test host `hosts[k]` of `net` (default: host k). */
  net?: TestHosts;
  hosts?: number[];
  /** Without `net`: member k's loopback address (default 127.0.0.1 for all). */
  addresses?: string[];
  /** Where the data's temporary directory goes (default: the system's), so a caller's cleanup takes it. */
  parentDir?: string;
}

export interface EtcdMember {
  name: string;
  address: string;
  clientUrl: string;
  peerUrl: string;
  /** The test host it runs in, when `net` was given. */
  host: number | undefined;
  dataDir: string;
  /** The running etcd; undefined after kill(). */
  process: DrainedProcess | undefined;
}

/** Base64 of a UTF-8 string, as etcd's JSON gateway takes keys and values. */
export function base64(text: string): string {
  return btoa(String.fromCharCode(...new TextEncoder().encode(text)));
}

function _unbase64(text: string): string {
  return new TextDecoder().decode(Uint8Array.from(atob(text), (c) => c.charCodeAt(0)));
}

export class EtcdProcess {
  readonly members: EtcdMember[];
  /** Every member's client URL, comma-separated: the value of `--etcd`. */
  readonly endpoints: string;
  readonly dir: string;
  readonly #net: TestHosts | undefined;
  readonly #initialCluster: string;
  readonly #token: string;

  private constructor(dir: string, members: EtcdMember[], net: TestHosts | undefined) {
    this.dir = dir;
    this.members = members;
    this.#net = net;
    this.endpoints = members.map((member) => member.clientUrl).join(",");
    this.#initialCluster = members.map((member) => `${member.name}=${member.peerUrl}`).join(",");
    this.#token = `fts-test-${crypto.randomUUID().slice(0, 8)}`;
  }

  /** Starts the members and waits until every one is healthy. */
  static async start(options: EtcdOptions = {}): Promise<EtcdProcess> {
    const count = options.members ?? 1;
    if (!Number.isInteger(count) || count < 1) {
      throw new RangeError(`EtcdProcess.start: members must be a positive integer, got ${count}`);
    }
    const net = options.net;
    const hosts = options.hosts ?? Array.from({ length: count }, (_, k) => k);
    const addresses = Array.from({ length: count }, (_, k) => {
      if (net) {
        const address = net.hosts[hosts[k]!]?.address;
        if (address === undefined) throw new RangeError(`no test host ${hosts[k]} for member ${k}`);
        return address;
      }
      return options.addresses?.[k] ?? "127.0.0.1";
    });
    // Distinct namespaces each have every port free; anything sharing one
    // network (loopback, two members in one host) takes a claimed free range.
    const ownNetworks = net?.mode === "netns" && new Set(hosts.slice(0, count)).size === count;
    const base = ownNetworks ? 0 : freePortRange(2 * count);
    const dir = await Deno.makeTempDir({
      prefix: "fts-etcd-",
      ...(options.parentDir ? { dir: options.parentDir } : {}),
    });
    const members = addresses.map((address, k): EtcdMember => {
      const clientPort = ownNetworks ? CLIENT_PORT : base + 2 * k;
      const peerPort = ownNetworks ? PEER_PORT : base + 2 * k + 1;
      return {
        name: `m${k}`,
        address,
        clientUrl: `http://${address}:${clientPort}`,
        peerUrl: `http://${address}:${peerPort}`,
        host: net ? hosts[k] : undefined,
        dataDir: join(dir, `m${k}`),
        process: undefined,
      };
    });
    const etcd = new EtcdProcess(dir, members, net);
    try {
      for (let k = 0; k < count; k++) etcd.#spawn(k);
      await Promise.all(members.map((_, k) => etcd.waitHealthy(k)));
    } catch (error) {
      await etcd.stop();
      throw error;
    }
    return etcd;
  }

  #member(k: number): EtcdMember {
    const member = this.members[k];
    if (member === undefined) throw new RangeError(`no etcd member ${k}`);
    return member;
  }

  #spawn(k: number): void {
    const member = this.#member(k);
    const args = [
      "--name",
      member.name,
      "--data-dir",
      member.dataDir,
      "--listen-client-urls",
      member.clientUrl,
      "--advertise-client-urls",
      member.clientUrl,
      "--listen-peer-urls",
      member.peerUrl,
      "--initial-advertise-peer-urls",
      member.peerUrl,
      "--initial-cluster",
      this.#initialCluster,
      "--initial-cluster-token",
      this.#token,
      "--initial-cluster-state",
      "new",
      "--heartbeat-interval",
      String(HEARTBEAT_MS),
      "--election-timeout",
      String(ELECTION_MS),
      "--logger",
      "zap",
      "--log-level",
      "warn",
    ];
    member.process = this.#net && member.host !== undefined
      ? this.#net.spawn(member.host, "etcd", args)
      : new DrainedProcess(
        new Deno.Command("etcd", { args, stdin: "null", stdout: "piped", stderr: "piped" })
          .spawn(),
      );
  }

  /**
   * A request to etcd's v3 JSON gateway (`path` such as "/v3/kv/put") or any
   * other URL path, sent to member `via` (default: the first running one) from
   * where that member lives. Never throws: an error is an answer.
   */
  async request(
    path: string,
    json?: unknown,
    options: { via?: number; timeoutMs?: number } = {},
  ): Promise<HostAnswer> {
    const k = options.via ?? Math.max(0, this.members.findIndex((m) => m.process !== undefined));
    const member = this.#member(k);
    const init = {
      ...(json === undefined ? {} : { json }),
      timeoutMs: options.timeoutMs ?? REQUEST_TIMEOUT_MS,
    };
    if (this.#net && member.host !== undefined) {
      return await this.#net.fetch(member.host, member.clientUrl + path, init);
    }
    return await hostFetch({ url: member.clientUrl + path, ...init });
  }

  /** Puts `key` = `value`; throws with etcd's answer when it is not a success. */
  async put(key: string, value: string, options: { via?: number; timeoutMs?: number } = {}) {
    const answer = await this.request("/v3/kv/put", {
      key: base64(key),
      value: base64(value),
    }, options);
    if ("error" in answer || answer.status !== 200) {
      throw new Error(`etcd put ${key} failed: ${JSON.stringify(answer)}`);
    }
  }

  /**
   * Puts `key` = `value`, trying again until one succeeds within `withinMs`:
   * after a member or host is lost, the survivors may need an election first,
   * and on a loaded machine that can outlast etcd's own request timeout.
   */
  async putWithin(key: string, value: string, withinMs: number, via?: number): Promise<void> {
    const deadline = Date.now() + withinMs;
    while (true) {
      try {
        const left = Math.max(1, deadline - Date.now());
        return await this.put(key, value, {
          ...(via === undefined ? {} : { via }),
          timeoutMs: Math.min(REQUEST_TIMEOUT_MS, left),
        });
      } catch (error) {
        if (Date.now() >= deadline) {
          throw new Error(`no write of ${key} succeeded within ${withinMs} ms`, { cause: error });
        }
        await new Promise((r) => setTimeout(r, HEALTH_POLL_MS));
      }
    }
  }

  /** The value of `key` (a linearizable read), or undefined where it has none. */
  async get(
    key: string,
    options: { via?: number; timeoutMs?: number } = {},
  ): Promise<string | undefined> {
    const answer = await this.request("/v3/kv/range", { key: base64(key) }, options);
    if ("error" in answer || answer.status !== 200) {
      throw new Error(`etcd get ${key} failed: ${JSON.stringify(answer)}`);
    }
    const kvs = (JSON.parse(answer.body) as { kvs?: { value?: string }[] }).kvs;
    return kvs?.[0] === undefined ? undefined : _unbase64(kvs[0].value ?? "");
  }

  /** Waits until member k answers /health with true (it is in a cluster that has a leader). */
  async waitHealthy(k: number, timeoutMs = HEALTHY_TIMEOUT_MS): Promise<void> {
    const member = this.#member(k);
    const deadline = Date.now() + timeoutMs;
    let last: HostAnswer = { error: "not asked yet" };
    while (Date.now() < deadline) {
      if (member.process === undefined) throw new Error(`etcd member ${member.name} is killed`);
      last = await this.request("/health", undefined, { via: k, timeoutMs: 2_000 });
      if (!("error" in last) && last.status === 200 && /"health":\s*"true"/.test(last.body)) return;
      await new Promise((r) => setTimeout(r, HEALTH_POLL_MS));
    }
    const log = member.process?.stderr.slice(-2_000) ?? "";
    throw new Error(
      `etcd member ${member.name} at ${member.clientUrl} not healthy after ${timeoutMs} ms: ${
        JSON.stringify(last)
      }\n${log}`,
    );
  }

  /** SIGKILLs member k and waits for it to exit. */
  async kill(k: number): Promise<void> {
    const process = this.#member(k).process;
    if (process === undefined) return;
    process.kill("SIGKILL");
    await process.status;
    this.#member(k).process = undefined;
  }

  /** Starts member k again on its data; waits until healthy when `wait` (default). */
  async restart(k: number, wait = true): Promise<void> {
    await this.kill(k);
    this.#spawn(k);
    if (wait) await this.waitHealthy(k);
  }

  /** Kills every member and removes the data. */
  async stop(): Promise<void> {
    await Promise.all(this.members.map((_, k) => this.kill(k)));
    await Deno.remove(this.dir, { recursive: true }).catch(() => {});
  }
}
