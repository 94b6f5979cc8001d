/**
 * Handlers of the part ops: serve a byte range of a stored part (streamed in
 * chunks, paced by the rate limiter), store a part (signed by a key the
 * writers policy admits, within its quota, and verified against its digest
 * by the store), say whether a part is stored (marking it as in use only
 * when a writer signed the question), and re-check a copy a
 * client reported as damaged.
 */
import { MAX_PART_BYTES } from "../state/config.ts";
import { ProtocolError } from "../wire/errors.ts";
import { encodeFrameHead, writeAll } from "../wire/frame.ts";
import { closeQuietly, Disconnect, withDeadline } from "./connection.ts";
import { checkPartHas, checkPartPut } from "../auth/part_put_signature.ts";
import { type Exchange, type HandlerFamily, type Instance } from "./handler.ts";

/** Bytes read from disk and written to the socket at a time when serving a part. */
export const DATA_CHUNK_BYTES = 1024 * 1024;
/**
 * A range up to this size goes out with its header in one write: two small
 * writes cost a round trip each where no-delay is not in force (TLS, a proxy).
 */
export const ONE_WRITE_MAX_BYTES = 64 * 1024;

export const PART_HANDLERS: HandlerFamily<"part.get" | "part.put" | "part.report" | "part.has"> = {
  "part.get": _sendPart,
  "part.put": _receivePart,
  "part.report": async (instance, { request, reply, state }) => {
    const { store } = instance;
    store.assertNotStalled();
    instance.counters.reportsReceived++;
    let quarantined = false;
    try {
      // Anyone may report: the re-hash waits for the address's budget, as part.verify's.
      const size = await store.sizeOf(request.digest);
      // Not held at all: a client found a listed copy gone (the supervisor heals on it).
      if (size === undefined) instance.counters.reportedMissing++;
      if (size !== undefined) await instance.verifyLimiter(state.address).take(size);
      if (!(await store.verify(request.digest))) {
        quarantined = await store.quarantine(request.digest);
        if (quarantined) instance.counters.quarantined++;
      }
    } catch (error) {
      if (!(error instanceof ProtocolError)) throw error;
    }
    await reply({ op: "ok", quarantined });
  },
  "part.has": async (instance, { request, reply, state }) => {
    const { store } = instance;
    store.assertNotStalled();
    const { digest, cluster, auth } = request;
    // Only a writer about to use the copy may mark it as in use (see PartStore.touch):
    // an anonymous asker must not keep a copy from being collected as unused.
    let signer: string | undefined;
    if (cluster !== undefined && auth !== undefined) {
      const mutations = await instance.mutations();
      signer = await checkPartHas({ cluster, digest }, auth, await mutations.clusterId());
      await mutations.assertMayStore(signer);
    }
    let size = await store.sizeOf(digest);
    // A writer that hears "stored" sends nothing and publishes this copy: as
    // for a part.put that finds one, only a copy that re-hashes right counts.
    if (size !== undefined && signer !== undefined) {
      if (await _goodOrQuarantined(instance, digest, state.address)) await store.touch(digest);
      else size = undefined;
    }
    await reply({ op: "has", digest, stored: size !== undefined, size });
  },
};

async function _sendPart(
  instance: Instance,
  { request, conn, state }: Exchange<"part.get">,
): Promise<void> {
  // A request that would wait on a hung disk fails at once: the client asks another replica.
  instance.store.assertNotStalled();
  const file = await instance.store.open(request.digest);
  try {
    const { offset, length } = request;
    if (length <= Math.min(ONE_WRITE_MAX_BYTES, instance.limiter?.chunkBytes ?? Infinity)) {
      await _sendSmallRange(instance, conn, state, file, request);
      return;
    }
    // Synchronous stat and seek, as the open (PartStore.open says why).
    _checkRange(offset, length, file.statSync().size);
    const head = encodeFrameHead({ op: "data", digest: request.digest, offset, length }, length);
    if (offset > 0) file.seekSync(offset, Deno.SeekMode.Start);
    await writeAll(conn, head);
    state.dataBuffer ??= new Uint8Array(DATA_CHUNK_BYTES);
    const buffer = state.dataBuffer;
    const limiter = instance.limiter;
    const chunkBytes = Math.min(buffer.length, limiter?.chunkBytes ?? buffer.length);
    let sent = 0;
    while (sent < length) {
      const chunk = buffer.subarray(0, Math.min(chunkBytes, length - sent));
      const n = await instance.store.io(() => file.read(chunk));
      // The part shrank under us: the body cannot be completed, so the only
      // honest signal left is to drop the connection.
      if (n === null) throw new Disconnect("Stored part is shorter than its header said");
      if (limiter) await limiter.take(n);
      // A client that stops reading would otherwise hold this slot and file
      // forever: it must take each chunk within idleTimeoutMs (so at least
      // DATA_CHUNK_BYTES per idleTimeoutMs, about 17 KiB/s by default).
      await withDeadline(
        writeAll(conn, buffer.subarray(0, n)),
        instance.limits.idleTimeoutMs,
        () => closeQuietly(conn),
      );
      sent += n;
      instance.counters.bytesServed += n;
    }
    instance.counters.partsServed++;
  } finally {
    file.close();
  }
}

/** Refuses a range that does not lie inside a part of `size` bytes. */
function _checkRange(offset: number, length: number, size: number): void {
  if (offset + length > size) {
    throw new ProtocolError(
      "BAD_RANGE",
      `Range ${offset}+${length} lies outside the part (${size} bytes)`,
    );
  }
}

/** Room for a frame's header before a small range in a connection's frame buffer. */
const FRAME_HEAD_ROOM = 1024;

/**
 * Reads a small range whole and sends it with its header in one write. The
 * read is synchronous: at most ONE_WRITE_MAX_BYTES, it holds the event loop
 * for microseconds when the part is in the page cache, less than handing it
 * to a thread and back costs. The range is read first, where the frame's
 * body goes in the connection's buffer (its requests are answered one at a
 * time), and the header is put before it: no new memory per range (a new
 * frame per range was most of an instance's garbage when serving thousands
 * of small files), and no stat (a read that comes short is a range outside
 * the part).
 */
async function _sendSmallRange(
  instance: Instance,
  conn: Exchange<"part.get">["conn"],
  state: Exchange<"part.get">["state"],
  file: Deno.FsFile,
  { digest, offset, length }: Exchange<"part.get">["request"],
): Promise<void> {
  state.frameBuffer ??= new Uint8Array(FRAME_HEAD_ROOM + ONE_WRITE_MAX_BYTES);
  const buffer = state.frameBuffer;
  if (offset > 0) file.seekSync(offset, Deno.SeekMode.Start);
  if (length === 0) _checkRange(offset, length, file.statSync().size);
  for (let read = 0; read < length;) {
    const n = file.readSync(buffer.subarray(FRAME_HEAD_ROOM + read, FRAME_HEAD_ROOM + length));
    if (n === null) {
      _checkRange(offset, length, file.statSync().size);
      throw new Disconnect("Stored part is shorter than its size said");
    }
    read += n;
  }
  const head = encodeFrameHead({ op: "data", digest, offset, length }, length);
  // A data header is an op, a checked digest and two numbers: well under the room.
  const start = FRAME_HEAD_ROOM - head.length;
  buffer.set(head, start);
  if (instance.limiter) await instance.limiter.take(length);
  await withDeadline(
    writeAll(conn, buffer.subarray(start, FRAME_HEAD_ROOM + length)),
    instance.limits.idleTimeoutMs,
    () => closeQuietly(conn),
  );
  instance.counters.bytesServed += length;
  instance.counters.partsServed++;
}

async function _receivePart(
  instance: Instance,
  { request, reader, bodyLength, reply, state }: Exchange<"part.put">,
): Promise<void> {
  const { digest } = request;
  instance.store.assertNotStalled();
  instance.store.assertCanStore();
  if (bodyLength > MAX_PART_BYTES) {
    throw new ProtocolError("BODY_TOO_LARGE", `A part may not exceed ${MAX_PART_BYTES} bytes`);
  }
  // Before any byte is read or stored: one Ed25519 verify, no shared state.
  const { cluster, auth } = request;
  if (cluster === undefined || auth === undefined) {
    throw new ProtocolError(
      "UNAUTHORIZED",
      "part.put must be signed (fields cluster and auth): storing a part needs a key",
    );
  }
  const mutations = await instance.mutations();
  const key = await checkPartPut(
    { cluster, digest, size: bodyLength },
    auth,
    await mutations.clusterId(),
  );
  const store = instance.store;
  // A copy of that size may be one a scrub never got to check: only a good
  // one spares the bytes (a repair records the copy as made); another goes.
  if ((await store.sizeOf(digest)) === bodyLength) {
    await mutations.assertMayStore(key);
    if (await _goodOrQuarantined(instance, digest, state.address)) {
      await store.touch(digest);
      await reader.skipBody();
      await reply({ op: "ok", stored: false });
      return;
    }
  }
  // Refused before any byte is read: the writers policy and the key's quota here.
  const admitted = await mutations.admitPart(key, digest, bodyLength, store, instance.id);
  let writer;
  try {
    writer = await store.beginWrite(digest);
  } catch (error) {
    admitted.released();
    throw error;
  }
  const buffer = new Uint8Array(Math.min(DATA_CHUNK_BYTES, Math.max(bodyLength, 1)));
  try {
    while (reader.bodyRemaining > 0) {
      const n = await reader.readBody(buffer);
      await writer.write(buffer.subarray(0, n));
    }
    await writer.commit();
  } catch (error) {
    admitted.released();
    await writer.abort();
    throw error;
  }
  await admitted.stored();
  instance.counters.partsStored++;
  instance.counters.bytesStored += bodyLength;
  await reply({ op: "ok", stored: true });
}

/**
 * Whether the stored copy of `digest` re-hashes to its name; when it does
 * not, or cannot be read, it is quarantined (so a new copy can take its
 * place) and this answers false. The re-hash waits for the asking address's
 * budget, as part.verify's: a signed part.has is a few hundred bytes, and a
 * part.put header that finds a copy is answered before its body is read, so
 * either would otherwise make the instance hash a whole part at no cost.
 */
async function _goodOrQuarantined(
  instance: Instance,
  digest: string,
  address: string | undefined,
): Promise<boolean> {
  const { store } = instance;
  let good = false;
  try {
    const size = await store.sizeOf(digest);
    if (size !== undefined) await instance.verifyLimiter(address).take(size);
    good = await store.verify(digest);
  } catch (error) {
    if (error instanceof ProtocolError) return false;
  }
  if (good) return true;
  if (await store.quarantine(digest).catch(() => false)) instance.counters.quarantined++;
  return false;
}
