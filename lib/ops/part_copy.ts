/**
 * Copying one part between two instances over the network: the body of a
 * part.get from the source streams straight into a part.put to the target,
 * which hashes it and makes it visible only if the digest checks out (temp
 * file, verify, rename). Nothing is buffered whole, so a copy cut off halfway
 * leaves no visible partial part: the target drops its temp file when the
 * connection breaks, or at its next start if it died itself.
 */
import { ProtocolError } from "../wire/errors.ts";
import { type PartSigner, Peer } from "../client/peer.ts";
import { ephemeralIdentity, type Identity } from "../auth/identity.ts";
import { type RateLimiter } from "../base/rate_limiter.ts";
import { type TlsClientOptions } from "../wire/tls.ts";

/** Bytes moved from the source socket to the target socket at a time. */
export const COPY_CHUNK_BYTES = 1024 * 1024;
export const COPY_CONNECT_TIMEOUT_MS = 2_000;
/**
 * How long either side may stay silent. Generous: the target hashes and
 * fsyncs before it answers, and a throttled copy reads slowly on purpose.
 */
export const COPY_STALL_TIMEOUT_MS = 30_000;

/** A copy that failed, with the side to blame so the caller can pick another. */
export class CopyError extends Error {
  readonly side: "source" | "target";
  /** The target received the whole part and it did not hash to its digest. */
  readonly corruptSource: boolean;
  constructor(
    side: "source" | "target",
    message: string,
    options: ErrorOptions & { corruptSource?: boolean } = {},
  ) {
    super(message, options);
    this.name = "CopyError";
    this.side = side;
    this.corruptSource = options.corruptSource ?? false;
  }
}

export interface CopyOptions {
  /** "host:port" of an instance that holds the part. */
  source: string;
  /** "host:port" of the instance that should get a copy. */
  target: string;
  digest: string;
  size: number;
  /** Shared by every copy of a repair, so the total stays under its rate. */
  limiter?: RateLimiter | undefined;
  signal?: AbortSignal | undefined;
  /** TLS for both connections; absent means FTS_TLS_CA or plain TCP. */
  tls?: TlsClientOptions | undefined;
  /** Called with each chunk's size as it is passed on, for progress. */
  onBytes?: ((bytes: number) => void) | undefined;
  /** Signs the part.put; absent means a key made for this process (copyIdentity). */
  identity?: Identity | undefined;
}

let _copyIdentity: Promise<Identity> | undefined;
/**
 * The key a copy is signed with when no other is given (repair and heal give
 * the operator's, where their host has it): made once per process and never
 * stored. An open cluster takes any key's part.put; a closed one refuses
 * this key (lib/auth/writers_policy.ts).
 */
export function copyIdentity(): Promise<Identity> {
  return _copyIdentity ??= ephemeralIdentity();
}

function _reason(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * Copies one part from `source` to `target`. Resolves with `stored: false`
 * when the target already had it. Throws CopyError naming the failing side.
 */
export async function copyPart(options: CopyOptions): Promise<{ stored: boolean }> {
  const { digest, size, limiter, signal } = options;
  signal?.throwIfAborted();
  const peerOptions = {
    connectTimeoutMs: COPY_CONNECT_TIMEOUT_MS,
    stallTimeoutMs: COPY_STALL_TIMEOUT_MS,
    tls: options.tls,
  };
  let source: Peer | undefined;
  let target: Peer | undefined;
  // Closing both sockets is what makes the target drop its temp file.
  const closeBoth = () => {
    source?.close();
    target?.close();
  };
  signal?.addEventListener("abort", closeBoth, { once: true });
  try {
    try {
      source = await Peer.connect(options.source, peerOptions);
      await source.requestPart(digest, 0, size);
    } catch (cause) {
      throw new CopyError("source", `${options.source}: ${_reason(cause)}`, { cause });
    }
    let signer: PartSigner;
    try {
      target = await Peer.connect(options.target, peerOptions);
      const identity = options.identity ?? await copyIdentity();
      signer = { identity, cluster: (await target.clusterInfo()).clusterId };
    } catch (cause) {
      throw new CopyError("target", `${options.target}: ${_reason(cause)}`, { cause });
    }
    const chunkBytes = Math.min(COPY_CHUNK_BYTES, limiter?.chunkBytes ?? COPY_CHUNK_BYTES);
    const body = _sourceBody(source, options, chunkBytes);
    try {
      return await target.putPart(digest, size, body, signer);
    } catch (error) {
      signal?.throwIfAborted();
      if (error instanceof CopyError) throw error;
      if (error instanceof ProtocolError && error.code === "DIGEST_MISMATCH") {
        throw new CopyError("source", `${options.source} sent bytes that fail the digest`, {
          cause: error,
          corruptSource: true,
        });
      }
      throw new CopyError("target", `${options.target}: ${_reason(error)}`, { cause: error });
    }
  } finally {
    signal?.removeEventListener("abort", closeBoth);
    closeBoth();
  }
}

/** The source's part.get body in chunks, paced by the limiter; errors blame the source. */
async function* _sourceBody(
  source: Peer,
  options: CopyOptions,
  chunkBytes: number,
): AsyncGenerator<Uint8Array> {
  const { size, limiter, signal } = options;
  const buffer = new Uint8Array(Math.max(1, Math.min(chunkBytes, size)));
  let copied = 0;
  while (copied < size) {
    signal?.throwIfAborted();
    let n: number;
    try {
      n = await source.reader.readBody(buffer.subarray(0, Math.min(buffer.length, size - copied)));
    } catch (cause) {
      throw new CopyError("source", `${options.source}: ${_reason(cause)}`, { cause });
    }
    if (limiter) await limiter.take(n, signal);
    copied += n;
    options.onBytes?.(n);
    yield buffer.subarray(0, n);
  }
}
