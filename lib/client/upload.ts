/**
 * Uploading a file into a running cluster. README.md explains it in steps;
 * this file follows them:
 *
 * 1. Ask any live server for the cluster's layout (R, part size, instances)
 *    and whether the name is taken.
 * 2. For each part (several at once): hash it, rank the instances for its
 *    digest as preload does (rendezvous hashing), and make sure the first R
 *    live ones hold it: ask each (`part.has`), send the part only where it is
 *    missing (`part.put`; the instance verifies the digest before keeping it).
 *    An instance that fails is replaced by the next one in rank order.
 * 3. Check that every instance holding a copy is still up; re-place copies
 *    from any that died.
 * 4. Publish with one signed `file.publish`: the server checks every copy is
 *    stored and adds the entry in one manifest change. Readers see the whole
 *    file or nothing. If parts vanished meanwhile (MISSING_PARTS), send them
 *    again and retry.
 *
 * Run again after an interruption, step 2 finds the stored copies and sends
 * only what is missing.
 */
import { createHash } from "node:crypto";
import { ProtocolError, RemoteProtocolError } from "../wire/errors.ts";
import { type Identity } from "../auth/identity.ts";
import type { FileEntry } from "../state/manifest.ts";
import { type ClusterInfo, type PartSigner, Peer } from "./peer.ts";
import { PeerPool } from "./peer_pool.ts";
import { rankAcrossDomains } from "../state/placement.ts";
import { RateLimiter } from "../base/rate_limiter.ts";
import { shuffled } from "../base/shuffled.ts";
import { sendSigned } from "./signed_client.ts";
import { type UploadEvent, type UploadProgress, type UploadResult } from "./upload_progress.ts";
import { hashInto } from "../state/store.ts";
import { preferredTlsError, TlsError } from "../wire/tls.ts";
import { Xxh128 } from "../hash/xxh128.ts";
import { checkSource, stampSource } from "../base/source_file.ts";
import {
  asSourceGone,
  asUploadError,
  giveUpOnMissingParts,
  refuseExisting,
  refuseOverQuota,
  UploadError,
} from "./upload_error.ts";

/** Bytes read from the file and written to a socket at a time. */
export const UPLOAD_CHUNK_BYTES = 256 * 1024;
export const DEFAULT_UPLOAD_PARALLEL = 4;
export const MAX_UPLOAD_PARALLEL = 64;
/** A reply to part.put comes after the instance made the part durable (fsync): allow for it. */
export const DEFAULT_UPLOAD_STALL_TIMEOUT_MS = 10_000;
/** Publish tries, each after re-sending copies the server reported missing. */
export const PUBLISH_ATTEMPTS = 3;
/** Rounds of "are the holders still up?" before publishing. */
export const LIVENESS_CHECK_ROUNDS = 3;
const LIVENESS_TIMEOUT_MS = 2_000;
/**
 * Before publishing, the copies of parts stored longer ago than this are asked
 * for again (a signed part.has), which also marks them as in use: a repair deletes
 * parts no file uses only once they have gone untouched for --unused-after
 * (24 h unless set, never under 1 h), so an upload that runs for days keeps
 * its early parts.
 */
export const REFRESH_COPIES_AFTER_MS = 30 * 60_000;

export interface UploadOptions {
  /** The local file. */
  path: string;
  /** Its name in the cluster (already validated). */
  name: string;
  servers: string[];
  identity: Identity;
  /** Overwrite an existing file of the same name, if it is yours. */
  replace?: boolean;
  /** Parts worked on at once. */
  parallel?: number;
  limitRateBytesPerSecond?: number;
  stallTimeoutMs?: number;
  connectTimeoutMs?: number;
  signal?: AbortSignal;
  onEvent?: (event: UploadEvent) => void;
  /** REFRESH_COPIES_AFTER_MS unless given (tests shorten it). */
  refreshCopiesAfterMs?: number;
}

interface _Part {
  index: number;
  offset: number;
  size: number;
  digest: string;
  /** XXH3-128 of the same bytes (manifest.ts), computed in the same pass. */
  xxh128: string;
  /** Instance ids holding a verified copy, as far as this run knows. */
  holders: string[];
  /** When (Date.now()) its copies were first stored or found, or last asked for again. */
  confirmedAt?: number;
}

/** Uploads a file; resolves once it is published. */
export async function uploadFile(
  options: UploadOptions,
  onProgress?: (progress: UploadProgress) => void,
): Promise<UploadResult> {
  return await new _Uploader(options, onProgress).run();
}

class _Uploader {
  readonly #options: UploadOptions;
  readonly #onProgress: ((progress: UploadProgress) => void) | undefined;
  readonly #startedAt = performance.now();
  /** Instances that failed during this run: not asked again. */
  readonly #failed = new Set<string>();
  readonly #pool: PeerPool;
  readonly #limiter: RateLimiter | undefined;
  /** Indexes of parts this run sent at least one copy of. */
  readonly #sentTo = new Set<number>();
  /** Bytes sent so far, over all copies, of each part not yet done. */
  readonly #sending = new Map<number, { size: number; sent: number }>();
  #progress: UploadProgress;
  #cluster: ClusterInfo = { clusterId: "", replicas: 0, partSize: 0, instances: {} };
  readonly #idleXxh128: Xxh128[] = [];

  constructor(options: UploadOptions, onProgress?: (progress: UploadProgress) => void) {
    this.#options = options;
    this.#onProgress = onProgress;
    this.#pool = new PeerPool({
      ...(options.connectTimeoutMs !== undefined
        ? { connectTimeoutMs: options.connectTimeoutMs }
        : {}),
      stallTimeoutMs: options.stallTimeoutMs ?? DEFAULT_UPLOAD_STALL_TIMEOUT_MS,
      signal: options.signal,
    });
    this.#limiter = options.limitRateBytesPerSecond
      ? new RateLimiter(options.limitRateBytesPerSecond)
      : undefined;
    this.#progress = {
      name: options.name,
      phase: "locating",
      size: 0,
      parts: 0,
      partsDone: 0,
      bytesDone: 0,
      partsPresent: 0,
      bytesPresent: 0,
      bytesInFlight: 0,
      copiesPresent: 0,
      copiesSent: 0,
      bytesSent: 0,
      failovers: 0,
      elapsedMs: 0,
    };
  }

  get progress(): UploadProgress {
    let bytesInFlight = 0;
    const replicas = Math.max(1, this.#cluster.replicas);
    for (const { size, sent } of this.#sending.values()) {
      // A copy sent again after a failover must not push a part past its size.
      bytesInFlight += Math.min(size, sent / replicas);
    }
    return {
      ...this.#progress,
      bytesInFlight: Math.floor(bytesInFlight),
      elapsedMs: performance.now() - this.#startedAt,
    };
  }

  async run(): Promise<UploadResult> {
    const ticker = this.#onProgress
      ? setInterval(() => this.#onProgress?.(this.progress), 200)
      : undefined;
    try {
      return await this.#run();
    } finally {
      clearInterval(ticker);
      this.#pool.closeAll();
      this.#onProgress?.(this.progress);
    }
  }

  async #run(): Promise<UploadResult> {
    const options = this.#options;
    // Checked again before publishing: a file changed meanwhile is never published.
    const stamp = await stampSource(options.path).catch(asUploadError);
    const size = stamp.size;
    // Step 1: the layout, and an early word on the name and the quota (the server decides for good).
    const from = await this.#locate();
    // Before a byte is sent: the publish would refuse it after every copy was stored.
    refuseOverQuota(this.#cluster.quota, options.identity.owner, size);
    const { replicas, partSize, instances } = this.#cluster;
    const partCount = size === 0 ? 0 : Math.ceil(size / partSize);
    Object.assign(this.#progress, { size, parts: partCount, phase: "sending" });
    const parts: _Part[] = Array.from({ length: partCount }, (_, index) => ({
      index,
      offset: index * partSize,
      size: Math.min(partSize, size - index * partSize),
      digest: "",
      xxh128: "",
      holders: [],
    }));

    // Step 2: every part onto R live instances.
    await this.#forEachPart(parts, async (part, file) => {
      Object.assign(part, await this.#hashPart(file, part));
      await this.#ensureCopies(part);
      this.#sending.delete(part.index);
      if (!this.#sentTo.has(part.index)) {
        this.#progress.partsPresent++;
        this.#progress.bytesPresent += part.size;
      }
      this.#progress.partsDone++;
      this.#progress.bytesDone += part.size;
    });

    // Step 3: every holder still up, and the copies of a long upload's early parts marked as in use.
    this.#progress.phase = "checking";
    const longAgo = Date.now() - (options.refreshCopiesAfterMs ?? REFRESH_COPIES_AFTER_MS);
    const early = parts.filter((part) => (part.confirmedAt ?? 0) <= longAgo);
    if (early.length > 0) await this.#recheckStored(early);
    await this.#recheckLiveness(parts);

    // Step 4: publish (the file as it was read), re-sending whatever the server finds missing.
    await checkSource(stamp).catch(asUploadError);
    this.#progress.phase = "publishing";
    const servers = [
      ...new Set([from, ...shuffled(options.servers), ...shuffled(Object.values(instances))]),
    ];
    for (let attempt = 1;; attempt++) {
      const body = new TextEncoder().encode(JSON.stringify({
        parts: parts.map((p) => ({
          digest: p.digest,
          xxh128: p.xxh128,
          size: p.size,
          replicas: this.#inRankOrder(p),
        })),
      }));
      const bodyDigest = createHash("sha256").update(body).digest("hex");
      try {
        const reply = await sendSigned(servers, options.identity, {
          op: "file.publish",
          name: options.name,
          replace: options.replace === true,
          size,
          partSize,
          bodyDigest,
        }, body);
        this.#progress.phase = "done";
        return {
          ...this.progress,
          contentId: String(reply.contentId ?? ""),
          generation: Number(reply.generation ?? 0),
          unchanged: reply.unchanged === true,
          replicas,
          partSize,
        };
      } catch (error) {
        if (!(error instanceof ProtocolError)) throw error;
        if (error.code === "MISSING_PARTS" && attempt < PUBLISH_ATTEMPTS) {
          this.#options.onEvent?.({ type: "republish", reason: error.message });
          await this.#recheckStored(parts);
          continue;
        }
        if (error.code === "MISSING_PARTS") giveUpOnMissingParts(error, PUBLISH_ATTEMPTS);
        throw error;
      }
    }
  }

  async #locate(): Promise<string> {
    const options = this.#options;
    const reasons: string[] = [];
    const tlsErrors: TlsError[] = [];
    const refusals: ProtocolError[] = [];
    for (const address of shuffled(options.servers)) {
      let peer: Peer | undefined;
      try {
        peer = await Peer.connect(address, {
          connectTimeoutMs: options.connectTimeoutMs ?? LIVENESS_TIMEOUT_MS,
          stallTimeoutMs: options.stallTimeoutMs ?? DEFAULT_UPLOAD_STALL_TIMEOUT_MS,
        });
        this.#cluster = await peer.clusterInfo({
          key: options.identity.owner,
          name: options.name,
        });
        let existing: FileEntry | undefined;
        try {
          existing = (await peer.getFile(options.name)).entry;
        } catch (error) {
          if (!(error instanceof ProtocolError && error.code === "NOT_FOUND")) throw error;
        }
        refuseExisting(existing, {
          ...this.#options,
          operatorKnown: this.#cluster.operator !== false,
        });
        options.onEvent?.({
          type: "cluster",
          from: address,
          replicas: this.#cluster.replicas,
          partSize: this.#cluster.partSize,
        });
        return address;
      } catch (error) {
        if (error instanceof UploadError) throw error;
        if (error instanceof TlsError) tlsErrors.push(error);
        // Reached, and it answered with an error: what it said is the news, not "is it running?".
        if (error instanceof RemoteProtocolError) refusals.push(error);
        reasons.push(`${address}: ${error instanceof Error ? error.message : String(error)}`);
      } finally {
        peer?.close();
      }
    }
    const tlsError = preferredTlsError(tlsErrors, options.servers.length);
    if (tlsError) throw new UploadError(tlsError.message, { cause: tlsError });
    // Reached, but it cannot take changes now (its manifest is missing, etcd is down): say why.
    if (refusals[0]) throw new UploadError(refusals[0].message, { cause: refusals[0] });
    throw new UploadError(
      `Cannot reach any server (tried ${options.servers.length}); is the cluster running?`,
      { cause: new Error(reasons.slice(0, 5).join("; ")) },
    );
  }

  /** Runs `work` over the parts, `parallel` at a time, each worker with its own file handle. */
  async #forEachPart(
    parts: _Part[],
    work: (part: _Part, file: Deno.FsFile) => Promise<void>,
  ): Promise<void> {
    const parallel = Math.max(
      1,
      Math.min(this.#options.parallel ?? DEFAULT_UPLOAD_PARALLEL, MAX_UPLOAD_PARALLEL),
    );
    const queue = [...parts];
    let failure: { error: unknown } | undefined;
    const worker = async () => {
      const file = await Deno.open(this.#options.path, { read: true });
      try {
        while (!failure) {
          const part = queue.shift();
          if (!part) return;
          this.#options.signal?.throwIfAborted();
          await work(part, file);
        }
      } catch (error) {
        failure ??= { error };
      } finally {
        file.close();
      }
    };
    await Promise.all(Array.from({ length: Math.min(parallel, queue.length) }, worker));
    if (failure) throw failure.error;
  }

  /** The part's SHA-256 and XXH3-128, from one read of its bytes. */
  async #hashPart(file: Deno.FsFile, part: _Part): Promise<{ digest: string; xxh128: string }> {
    await file.seek(part.offset, Deno.SeekMode.Start);
    const hash = createHash("sha256");
    // Parts are hashed a few at a time; their hashers are reused.
    const fast = (this.#idleXxh128.pop() ?? new Xxh128()).reset();
    const read = await hashInto(
      {
        update(chunk) {
          hash.update(chunk);
          fast.update(chunk);
        },
      },
      file,
      part.size,
    );
    const xxh128 = fast.digest();
    this.#idleXxh128.push(fast);
    if (read !== part.size) {
      throw new UploadError(`${this.#options.path} got shorter while it was being uploaded`);
    }
    return { digest: hash.digest("hex"), xxh128 };
  }

  /** Every instance, best placement for this digest first, spread over failure domains. */
  #rank(digest: string): string[] {
    const { instances, domains } = this.#cluster;
    return rankAcrossDomains(digest, Object.keys(instances), (id) => domains?.[id] ?? "");
  }

  /** The holders of a part, best placement first (what readers try first). */
  #inRankOrder(part: _Part): string[] {
    const rank = this.#rank(part.digest);
    return [...part.holders].sort((a, b) => rank.indexOf(a) - rank.indexOf(b));
  }

  /**
   * Brings the part up to R holders: the best-ranked instances that are not
   * known to have failed, asked R at a time; each failure moves on to the next
   * instance in rank order, and those that failed are asked once more, last.
   */
  async #ensureCopies(part: _Part): Promise<void> {
    part.confirmedAt ??= Date.now();
    const { replicas } = this.#cluster;
    const rank = this.#rank(part.digest);
    const candidates = rank.filter((id) => !part.holders.includes(id));
    let cursor = 0;
    const reasons: string[] = [];
    /** What instances that answered with an error said. */
    const answers: string[] = [];
    // Instances that failed (earlier in this run, or just now for this part) are
    // asked once more when no other is left, not never: one restarted since can
    // take copies again, and without it fewer than R live instances may remain.
    const last: string[] = [];
    const askedAgain = new Set<string>();
    const next = (): string | undefined => {
      while (cursor < candidates.length) {
        const id = candidates[cursor++]!;
        if (!this.#failed.has(id)) return id;
        last.push(id);
      }
      const id = last.shift();
      if (id !== undefined) askedAgain.add(id);
      return id;
    };
    const slot = async () => {
      for (let id = next(); id !== undefined; id = next()) {
        try {
          await this.#storeOn(id, part);
          part.holders.push(id);
          this.#failed.delete(id);
          return;
        } catch (error) {
          if (error instanceof UploadError) throw error;
          this.#options.signal?.throwIfAborted();
          const reason = error instanceof Error ? error.message : String(error);
          reasons.push(`${id}: ${reason}`);
          if (error instanceof RemoteProtocolError) answers.push(`${id} answered: ${reason}`);
          this.#failed.add(id);
          if (!askedAgain.has(id)) last.push(id);
          this.#progress.failovers++;
          this.#options.onEvent?.({ type: "failover", part: part.index, instance: id, reason });
        }
      }
    };
    const needed = replicas - part.holders.length;
    if (needed <= 0) return;
    await Promise.all(Array.from({ length: needed }, slot));
    if (part.holders.length < replicas) {
      // An instance that answered with an error is up: what it said (a full disk, say) is the news.
      const answer = answers[0];
      throw new UploadError(
        `Cannot store part ${part.index} of ${
          JSON.stringify(this.#options.name)
        }: only ${part.holders.length} of ${replicas} copies on live instances (${rank.length} instances, ${this.#failed.size} failed)` +
          (answer ? `; ${answer}` : ""),
        { cause: new Error(reasons.slice(0, 5).join("; ")) },
      );
    }
  }

  /** Makes sure instance `id` holds the part: asks first, sends only when missing. */
  async #storeOn(id: string, part: _Part): Promise<void> {
    const address = this.#cluster.instances[id]!;
    let peer: Peer | undefined;
    try {
      let held: number | undefined;
      ({ peer, value: held } = await this.#pool.begin(
        address,
        (peer) => peer.hasPart(part.digest, this.#signer()),
      ));
      if (held === part.size) {
        this.#progress.copiesPresent++;
      } else {
        await peer.putPart(part.digest, part.size, this.#chunks(part), this.#signer());
        this.#progress.copiesSent++;
        this.#sentTo.add(part.index);
      }
      this.#pool.release(peer);
    } catch (error) {
      peer?.close();
      // Every instance would say the same: the policy and the quota are the cluster's.
      if (error instanceof ProtocolError && error.code === "NOT_ALLOWED") {
        throw new UploadError(error.message, { cause: error });
      }
      if (error instanceof ProtocolError && error.code === "DIGEST_MISMATCH") {
        throw new UploadError(
          `${this.#options.path} changed while it was being uploaded (part ${part.index} no longer ` +
            `matches its digest); run the upload again`,
          { cause: error },
        );
      }
      throw error;
    }
  }

  /** Signs this upload's part.put and part.has (the latter marks a found copy as in use). */
  #signer(): PartSigner {
    return { identity: this.#options.identity, cluster: this.#cluster.clusterId };
  }

  /** The part's bytes, read from the file in chunks as the socket takes them. */
  async *#chunks(part: _Part): AsyncGenerator<Uint8Array> {
    // Gone since (deleted, say): this file's trouble, not the instance's.
    const file = await Deno.open(this.#options.path, { read: true }).catch(asSourceGone);
    try {
      await file.seek(part.offset, Deno.SeekMode.Start);
      const limiter = this.#limiter;
      // Every stream (parallel parts, R copies each) sends often enough for its instance to wait.
      const streams = (this.#options.parallel ?? DEFAULT_UPLOAD_PARALLEL) * this.#cluster.replicas;
      const most = limiter?.chunkFor(streams) ?? Infinity;
      const buffer = new Uint8Array(Math.min(UPLOAD_CHUNK_BYTES, most));
      let done = 0;
      while (done < part.size) {
        const n = await file.read(buffer.subarray(0, Math.min(buffer.length, part.size - done)));
        if (n === null) {
          throw new UploadError(`${this.#options.path} got shorter while it was being uploaded`);
        }
        if (limiter) await limiter.take(n, this.#options.signal);
        this.#options.signal?.throwIfAborted();
        done += n;
        this.#progress.bytesSent += n;
        // Copies re-sent after step 2 are for parts already counted done.
        if (this.#progress.phase === "sending") {
          const sending = this.#sending.get(part.index) ?? { size: part.size, sent: 0 };
          sending.sent += n;
          this.#sending.set(part.index, sending);
        }
        yield buffer.subarray(0, n);
      }
    } finally {
      file.close();
    }
  }

  async #alive(id: string): Promise<boolean> {
    let peer: Peer | undefined;
    try {
      peer = await Peer.connect(this.#cluster.instances[id]!, {
        connectTimeoutMs: LIVENESS_TIMEOUT_MS,
        stallTimeoutMs: LIVENESS_TIMEOUT_MS,
      });
      await peer.ping();
      return true;
    } catch {
      return false;
    } finally {
      peer?.close();
    }
  }

  /** Step 3: drops holders that went down since they took a copy, and places those copies anew. */
  async #recheckLiveness(parts: _Part[]): Promise<void> {
    for (let round = 0; round < LIVENESS_CHECK_ROUNDS; round++) {
      const holders = [...new Set(parts.flatMap((p) => p.holders))];
      const alive = await Promise.all(holders.map((id) => this.#alive(id)));
      const dead = new Set(holders.filter((_, i) => !alive[i]));
      if (dead.size === 0) return;
      for (const id of dead) {
        this.#failed.add(id);
        this.#progress.failovers++;
        this.#options.onEvent?.({
          type: "failover",
          part: -1,
          instance: id,
          reason: "went down after taking copies",
        });
      }
      const affected = parts.filter((p) => p.holders.some((id) => dead.has(id)));
      for (const part of affected) part.holders = part.holders.filter((id) => !dead.has(id));
      await this.#forEachPart(affected, (part) => this.#ensureCopies(part));
    }
  }

  /** After MISSING_PARTS: asks every holder again, and re-sends the copies that are gone. */
  async #recheckStored(parts: _Part[]): Promise<void> {
    await this.#forEachPart(parts, async (part) => {
      part.confirmedAt = Date.now();
      const still: string[] = [];
      for (const id of part.holders) {
        let peer: Peer | undefined;
        try {
          let held: number | undefined;
          ({ peer, value: held } = await this.#pool.begin(
            this.#cluster.instances[id]!,
            (peer) => peer.hasPart(part.digest, this.#signer()),
          ));
          if (held === part.size) still.push(id);
          this.#pool.release(peer);
        } catch {
          peer?.close();
          this.#failed.add(id);
        }
      }
      part.holders = still;
      await this.#ensureCopies(part);
    });
    await this.#recheckLiveness(parts);
  }
}
