/**
 * Reading a byte range of one part from its replicas, with failover, into any
 * sink (a file for fetch; a buffer or a spool file for a server that must
 * verify a part before sending it on):
 *
 * 1. Pick a replica: not given up on for this part, not failed a moment ago
 *    (ServerCooldown), serving the fewest reads of this reader, and spread
 *    over the replicas by part index so parallel reads come from different
 *    servers.
 * 2. Ask it for the bytes from the byte reached to the end of the range and
 *    hand them to the sink as they arrive.
 * 3. On a failure (connect, timeout, reset, an error answer), count a
 *    failover and continue from the byte reached on the next replica. A
 *    replica is given up on for the part after ATTEMPTS_PER_REPLICA failures,
 *    or at once when it says it has no good copy (one shorter than the part
 *    is reported, as in 4). A pooled connection the instance closed while
 *    idle is no failure: PeerPool.begin() reconnects.
 * 4. When the range ends at the part's end, the sink's whole part must match
 *    the part's XXH3-128 as the sink hashed it on the way in (where the
 *    entry has one and the sink can), else its SHA-256. If it does not,
 *    bytes the sink held from before are fetched again first; then every
 *    replica that contributed is reported (the instance re-hashes its copy
 *    and quarantines it) and the part starts over from byte 0 without them.
 * 5. When every replica is given up on, the read fails with a FetchError
 *    naming the part; it never waits forever (the peers' stall timeouts).
 *
 * Received bytes go from one buffer straight to the sink: no copy on the way.
 */
import { deadline } from "../base/deadline.ts";
import { ProtocolError } from "../wire/errors.ts";
import { domainOfAddress } from "../state/cluster_view.ts";
import { FetchError } from "./fetch_error.ts";
import { DEFAULT_CONNECT_TIMEOUT_MS, Peer } from "./peer.ts";
import { ServerCooldown } from "./server_cooldown.ts";

/** Bytes read from a socket and handed to the sink at a time. */
export const RECEIVE_CHUNK_BYTES = 1024 * 1024;
/** Tries per replica per part before that replica is given up on for the part. */
export const ATTEMPTS_PER_REPLICA = 2;
/** Pause before trying a replica again that failed this part, so a brief hiccup can pass. */
export const RETRY_SAME_REPLICA_DELAY_MS = 200;
/** How long an instance may take to answer a report of a corrupt copy (it re-hashes it). */
export const REPORT_STALL_TIMEOUT_MS = 10_000;
/** How long a finished reader waits for its reports of corrupt copies to be answered. */
export const REPORT_GRACE_MS = 3_000;
/** Spare receive buffers a reader keeps for readMany(): a share each beyond the first. */
const _MAX_SPARE_BUFFERS = 8;
/** What hostLoad() counts for a replica that failed a moment ago: busier than any host. */
const _COOLING_LOAD = 1_000_000;
/** Error codes meaning the replica has no good copy: trying it again would not help. */
const _PERMANENT_CODES: readonly string[] = ["NOT_FOUND", "QUARANTINED", "BAD_RANGE"];
/**
 * A refusal that says the replica's copy is short (a range inside the part
 * refused) or gone: reported, so that the instance quarantines a short copy,
 * and counts a lost one for healing.
 */
const _shortOrGone = (error: unknown) =>
  error instanceof ProtocolError && (error.code === "BAD_RANGE" || error.code === "NOT_FOUND");

export type * from "./part_reader_types.ts";
import type {
  PartRange,
  PartReadCounters,
  PartReaderOptions,
  PartReadResult,
  PartSink,
  PartToRead,
} from "./part_reader_types.ts";

/** An error from the sink, carried past the failover handling unchanged. */
class _SinkFailure {
  constructor(readonly error: unknown) {}
}

export class PartReader {
  readonly counters: PartReadCounters;
  readonly #options: PartReaderOptions;
  readonly #cooldown: ServerCooldown;
  /** Reads in progress per server address, to spread load. */
  readonly #active = new Map<string, number>();
  /**
   * Reads in flight per host (an address without its port): parts spread over
   * hosts first, since instances of one host share its uplink. Five hosts
   * behind 200 Mbit/s links each sent 3.6-3.9 at once on average when only
   * instances were counted.
   */
  readonly #activeHosts = new Map<string, number>();
  /** Receive buffers readMany() lent to its shares, for its next call. */
  readonly #spareBuffers: Uint8Array[] = [];
  /** Reports of corrupt copies still being sent or answered. */
  readonly #reports = new Set<Promise<void>>();

  constructor(options: PartReaderOptions) {
    this.#options = options;
    this.counters = options.counters ?? { bytesReceived: 0, failovers: 0, digestMismatches: 0 };
    this.#cooldown = options.cooldown ?? new ServerCooldown();
  }

  /** Where clients dial instance `id` ("host:port"). */
  addressOf(id: string): string {
    return this.#options.addressOf(id);
  }

  /**
   * Reads in flight on the least busy host that holds one of `replicas` (a
   * replica that failed a moment ago counts as busy): fetch gives a free
   * track the part whose host is idlest, so that no host waits while others
   * have two parts in flight.
   */
  hostLoad(replicas: readonly string[]): number {
    const now = Date.now();
    let least = Infinity;
    for (const id of replicas) {
      const address = this.addressOf(id);
      const load = this.#cooldown.isCooling(address, now)
        ? _COOLING_LOAD
        : this.#activeHosts.get(domainOfAddress(address)) ?? 0;
      least = Math.min(least, load);
    }
    return least;
  }

  /**
   * A receive buffer as large as one read should take (smaller under a rate
   * limit), and no larger than `mostBytes`: a fetch of many small files
   * would spend more zeroing 1 MiB buffers than receiving.
   */
  receiveBuffer(mostBytes = RECEIVE_CHUNK_BYTES): Uint8Array {
    return new Uint8Array(this.receiveBytes(mostBytes));
  }

  /** The length of the buffer receiveBuffer(mostBytes) would make. */
  receiveBytes(mostBytes = RECEIVE_CHUNK_BYTES): number {
    const limit = this.#options.limiter?.chunkBytes ?? RECEIVE_CHUNK_BYTES;
    return Math.max(1, Math.min(RECEIVE_CHUNK_BYTES, limit, mostBytes));
  }

  /** Reads `range` of `part` into `sink`; see the steps at the top of this file. */
  async read(part: PartToRead, sink: PartSink, range: PartRange = {}): Promise<PartReadResult> {
    const start = range.start ?? 0;
    const end = range.end ?? part.size;
    if (
      !(Number.isSafeInteger(start) && Number.isSafeInteger(end) && 0 <= start &&
        start <= end && end <= part.size)
    ) {
      throw new RangeError(
        `Cannot read bytes [${start}, ${end}) of part ${part.index}: it has ${part.size}`,
      );
    }
    try {
      return await this.#read(part, sink, start, end, range.buffer ?? this.receiveBuffer());
    } catch (error) {
      if (error instanceof _SinkFailure) throw error.error;
      throw error;
    }
  }

  /**
   * Reads several whole parts at once, asking every replica chosen for some
   * of them for all of its share in one write (Peer.requestParts), so that
   * many small parts cost each side one write and one read instead of one
   * of each per part. Replicas are chosen as read() chooses them, spreading
   * the parts. No failover here: a part whose answer fails (an error answer,
   * a connection that drops, bytes that fail the digest, which are reported
   * as read() reports them) is left undefined, for the caller to read() as
   * usual. An error of a sink is thrown.
   */
  async readMany(
    items: readonly { part: PartToRead; sink: PartSink }[],
    buffer: Uint8Array,
    onPart?: (index: number, result: PartReadResult | undefined) => void,
  ): Promise<(PartReadResult | undefined)[]> {
    const results: (PartReadResult | undefined)[] = items.map(() => undefined);
    // Each part is told to `onPart` once, as soon as it is known.
    const told = items.map(() => false);
    const tell = (i: number, result: PartReadResult | undefined) => {
      results[i] = result;
      if (told[i]) return;
      told[i] = true;
      onPart?.(i, result);
    };
    const shares = new Map<string, { id: string; indexes: number[] }>();
    for (const [i, { part }] of items.entries()) {
      const id = this.#pickReplica(part, new Map());
      if (id === undefined) continue;
      const address = this.addressOf(id);
      // Counted as reading from now on, so that the next parts spread.
      this.#active.set(address, (this.#active.get(address) ?? 0) + 1);
      const share = shares.get(address) ?? { id, indexes: [] };
      share.indexes.push(i);
      shares.set(address, share);
    }
    // One buffer per share, as the shares are read at once; the extra ones kept for next time.
    const buffers = [...shares.keys()].map((_, n) =>
      n === 0 ? buffer : this.#spareBuffers.pop() ?? new Uint8Array(buffer.length)
    );
    // Every share ends before anything is thrown: none writes into a sink after.
    const settled = await Promise.allSettled(
      [...shares].map(([address, { id, indexes }], n) =>
        this.#attemptMany(
          address,
          id,
          indexes.map((i) => items[i]!),
          buffers[n]!,
          (k, result) => tell(indexes[k]!, result),
        )
      ),
    );
    for (const [i, result] of results.entries()) tell(i, result);
    for (const outcome of settled) {
      if (outcome.status === "fulfilled") continue;
      const error = outcome.reason;
      throw error instanceof _SinkFailure ? error.error : error;
    }
    for (const spare of buffers.slice(1)) {
      if (spare.length === buffer.length && this.#spareBuffers.length < _MAX_SPARE_BUFFERS) {
        this.#spareBuffers.push(spare);
      }
    }
    return results;
  }

  /**
   * One replica's share of readMany(): tells `settle` each part's result as
   * it is known, in order (undefined when it was not read whole and
   * verified); the parts after a failure are not told. Gives back the
   * `#active` count readMany() took for each part.
   */
  async #attemptMany(
    address: string,
    id: string,
    items: readonly { part: PartToRead; sink: PartSink }[],
    buffer: Uint8Array,
    settle: (k: number, result: PartReadResult | undefined) => void,
  ): Promise<void> {
    const { pool, limiter, signal } = this.#options;
    // The parts told so far: the next one's index in `items`.
    let told = 0;
    const tell = (result: PartReadResult | undefined) => settle(told++, result);
    const host = domainOfAddress(address);
    this.#activeHosts.set(host, (this.#activeHosts.get(host) ?? 0) + items.length);
    let peer: Peer | undefined;
    try {
      const ranges = items.map(({ part }) => ({
        digest: part.digest,
        offset: 0,
        length: part.size,
      }));
      let first: ProtocolError | undefined;
      ({ peer, value: first } = await pool.begin(address, async (peer) => {
        await peer.requestParts(ranges);
        return await peer.partAnswer(items[0]!.part.size);
      }));
      for (const [k, { part, sink }] of items.entries()) {
        signal?.throwIfAborted();
        const refused = k === 0 ? first : await peer.partAnswer(part.size);
        if (refused !== undefined) {
          if (_shortOrGone(refused)) this.#report(address, part.digest);
          this.#failedOver(part, id, refused);
          tell(undefined);
          continue;
        }
        await _sinkCall(() => sink.restart(0));
        for (let reached = 0; reached < part.size;) {
          const n = await this.#receiveChunk(peer, sink, buffer, reached, part.size);
          reached += n;
          if (limiter) await limiter.take(n);
        }
        if (await this.#holdsPart(part, sink)) {
          this.#options.onEvent?.({ type: "part", part: part.index, from: id }, part);
          tell({ from: id, verified: true });
          continue;
        }
        this.counters.digestMismatches++;
        this.#options.onEvent?.({ type: "mismatch", part: part.index, replicas: [id] }, part);
        this.#report(address, part.digest);
        tell(undefined);
      }
      pool.release(peer);
      this.#cooldown.recovered(address);
    } catch (error) {
      peer?.close();
      if (error instanceof _SinkFailure) throw error;
      if (!signal?.aborted) {
        this.#cooldown.failed(address);
        for (const { part } of items.slice(told)) this.#failedOver(part, id, error);
      }
    } finally {
      this.#active.set(address, (this.#active.get(address) ?? items.length) - items.length);
      this.#activeHosts.set(host, (this.#activeHosts.get(host) ?? items.length) - items.length);
    }
  }

  /** Counts and tells a failover of `part` away from replica `id`, at byte 0. */
  #failedOver(part: PartToRead, id: string, error: unknown): void {
    this.counters.failovers++;
    this.#options.onEvent?.({
      type: "failover",
      part: part.index,
      from: id,
      at: 0,
      reason: error instanceof Error ? error.message : String(error),
    }, part);
  }

  async #read(
    part: PartToRead,
    sink: PartSink,
    start: number,
    end: number,
    buffer: Uint8Array,
  ): Promise<PartReadResult> {
    const { addressOf, signal } = this.#options;
    const verify = end === part.size;
    let reached = start;
    // Bytes of this part the sink held from before, not from any replica.
    let heldBefore = reached;
    const contributors = new Set<string>();
    const failures = new Map<string, number>();
    const reasons: string[] = [];
    while (true) {
      signal?.throwIfAborted();
      const id = this.#pickReplica(part, failures);
      if (id === undefined) {
        throw new FetchError(
          `Cannot fetch part ${part.index} of ${
            JSON.stringify(part.fileName)
          }: all ${part.replicas.length} replicas failed`,
          [part.index],
          { cause: new Error(reasons.join("; ")) },
        );
      }
      const address = addressOf(id);
      if ((failures.get(id) ?? 0) > 0) {
        await new Promise<void>((resolve) => deadline(RETRY_SAME_REPLICA_DELAY_MS, resolve));
      }
      const host = domainOfAddress(address);
      this.#active.set(address, (this.#active.get(address) ?? 0) + 1);
      this.#activeHosts.set(host, (this.#activeHosts.get(host) ?? 0) + 1);
      try {
        const attempt = await this.#attempt(part, sink, address, reached, end, buffer, () => {
          contributors.add(id);
        });
        reached = attempt.reached;
        if (attempt.error !== undefined) {
          const error = attempt.error;
          signal?.throwIfAborted();
          const reason = error instanceof Error ? error.message : String(error);
          reasons.push(`${id}: ${reason}`);
          const permanent = error instanceof ProtocolError && _PERMANENT_CODES.includes(error.code);
          if (_shortOrGone(error)) this.#report(address, part.digest);
          failures.set(id, permanent ? ATTEMPTS_PER_REPLICA : (failures.get(id) ?? 0) + 1);
          if (!permanent) this.#cooldown.failed(address);
          this.counters.failovers++;
          this.#options.onEvent?.({
            type: "failover",
            part: part.index,
            from: id,
            at: reached,
            reason,
          }, part);
          continue;
        }
      } finally {
        this.#active.set(address, (this.#active.get(address) ?? 1) - 1);
        this.#activeHosts.set(host, (this.#activeHosts.get(host) ?? 1) - 1);
      }
      if (!verify || await this.#holdsPart(part, sink)) {
        this.#options.onEvent?.({ type: "part", part: part.index, from: id }, part);
        this.#cooldown.recovered(address);
        return { from: id, verified: verify };
      }
      reached = 0;
      if (heldBefore > 0) {
        // The bytes the sink held may be what is wrong: start the part over
        // from byte 0 before blaming any replica.
        heldBefore = 0;
        contributors.clear();
        continue;
      }
      // Wrong bytes: tell every replica that contributed, and start the part
      // over without them.
      this.counters.digestMismatches++;
      this.#options.onEvent?.(
        { type: "mismatch", part: part.index, replicas: [...contributors] },
        part,
      );
      for (const bad of contributors) {
        failures.set(bad, ATTEMPTS_PER_REPLICA);
        reasons.push(`${bad}: digest mismatch`);
        this.#report(addressOf(bad), part.digest);
      }
      contributors.clear();
    }
  }

  /**
   * One request to one replica for bytes [from, end): the byte reached, and
   * the error that ended it early (a sink's error is thrown instead).
   */
  async #attempt(
    part: PartToRead,
    sink: PartSink,
    address: string,
    from: number,
    end: number,
    buffer: Uint8Array,
    onAnswer: () => void,
  ): Promise<{ reached: number; error?: unknown }> {
    const { pool, limiter, signal } = this.#options;
    let reached = from;
    let peer: Peer | undefined;
    try {
      ({ peer } = await pool.begin(
        address,
        (peer) => peer.requestPart(part.digest, reached, end - reached),
      ));
      onAnswer();
      await _sinkCall(() => sink.restart(reached));
      while (reached < end) {
        const n = await this.#receiveChunk(peer, sink, buffer, reached, end);
        reached += n;
        if (limiter) await limiter.take(n);
        signal?.throwIfAborted();
      }
      pool.release(peer);
      return { reached };
    } catch (error) {
      peer?.close();
      if (error instanceof _SinkFailure) throw error;
      return { reached, error };
    }
  }

  /**
   * Receives the next bytes of a body ending at byte `end` of the part into
   * the sink (into the sink's own memory when it offers it, else through
   * `buffer`; at most a buffer's length either way, as a rate limit sizes
   * the buffer); returns how many.
   */
  async #receiveChunk(
    peer: Peer,
    sink: PartSink,
    buffer: Uint8Array,
    reached: number,
    end: number,
  ): Promise<number> {
    const length = Math.min(buffer.length, end - reached);
    const into = sink.receiveInto?.(reached, length) ?? buffer.subarray(0, length);
    const n = await peer.reader.readBody(into);
    if (n === 0) throw new ProtocolError("BAD_FRAME", "Body ended early");
    await _sinkCall(() => sink.write(reached, into.subarray(0, n)));
    this.counters.bytesReceived += n;
    return n;
  }

  /**
   * Whether the sink's whole part matches the part's digest: its XXH3-128
   * when the sink hashed the bytes on their way in, else (or when that
   * differs: the entry's XXH3-128 could be wrong, its SHA-256 is what the
   * part is) its SHA-256, hashed by the sink now.
   */
  async #holdsPart(part: PartToRead, sink: PartSink): Promise<boolean> {
    if (part.xxh128 !== undefined && !this.#options.sha256Only) {
      const quick = await _sinkCall(() => sink.quickDigest?.());
      if (quick?.bytes === part.size && quick.digest === part.xxh128) return true;
    }
    const held = await _sinkCall(() => sink.digest());
    return held.bytes === part.size && held.digest === part.digest;
  }

  #pickReplica(part: PartToRead, failures: Map<string, number>): string | undefined {
    const { addressOf } = this.#options;
    const now = Date.now();
    const candidates = part.replicas
      .map((id, position) => ({ id, position }))
      .filter(({ id }) => (failures.get(id) ?? 0) < ATTEMPTS_PER_REPLICA);
    if (candidates.length === 0) return undefined;
    const n = part.replicas.length;
    const score = ({ id, position }: { id: string; position: number }) => {
      const address = addressOf(id);
      return [
        failures.get(id) ?? 0,
        this.#cooldown.isCooling(address, now) ? 1 : 0,
        this.#activeHosts.get(domainOfAddress(address)) ?? 0,
        this.#active.get(address) ?? 0,
        // Spread parts over replicas so parallel streams come from different servers.
        (position - part.index % n + n) % n,
      ];
    };
    candidates.sort((a, b) => {
      const sa = score(a);
      const sb = score(b);
      for (let i = 0; i < sa.length; i++) if (sa[i] !== sb[i]) return sa[i]! - sb[i]!;
      return 0;
    });
    return candidates[0]!.id;
  }

  #report(address: string, digest: string): void {
    // Best effort: the instance re-hashes its copy and quarantines it if bad.
    // Reading goes on meanwhile; reportsSettled() waits for the answers.
    const report = (async () => {
      const peer = await Peer.connect(address, {
        connectTimeoutMs: DEFAULT_CONNECT_TIMEOUT_MS,
        stallTimeoutMs: REPORT_STALL_TIMEOUT_MS,
        tls: this.#options.tls,
      });
      try {
        await peer.report(digest);
      } finally {
        peer.close();
      }
    })().catch(() => {}).finally(() => this.#reports.delete(report));
    this.#reports.add(report);
  }

  /** Waits, at most `graceMs`, for the reports of corrupt copies still in flight. */
  async reportsSettled(graceMs: number = REPORT_GRACE_MS): Promise<void> {
    if (this.#reports.size === 0) return;
    let cancel = () => {};
    await Promise.race([
      Promise.all(this.#reports),
      new Promise<void>((resolve) => cancel = deadline(graceMs, resolve)),
    ]);
    cancel();
  }
}

/** Runs a sink call, marking what it throws as the sink's. */
async function _sinkCall<T>(call: () => T | Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (error) {
    throw new _SinkFailure(error);
  }
}
