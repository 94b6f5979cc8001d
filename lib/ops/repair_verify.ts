/**
 * Re-hashing copies where they are stored (part.verify): each instance hashes
 * its copies one at a time, VERIFY_CONCURRENCY instances at once, within the
 * repair's re-hash rate; a corrupt copy is quarantined by its instance and
 * reported. The scrub re-hashes every copy; a repair only those of parts that
 * need work.
 */
import { type Peer, type VerifyStatus } from "../client/peer.ts";
import { runPool } from "../base/run_pool.ts";
import { RemoteProtocolError } from "../wire/errors.ts";
import { VERIFY_CONCURRENCY } from "./repair_options.ts";
import { type RepairRun, type WantedPart } from "./repair_run.ts";

/** Re-hashes copies on their instances; returns the good ones per instance. */
export async function verifyCopies(
  run: RepairRun,
  toVerify: Map<string, Set<string>>,
  wanted: Map<string, WantedPart>,
): Promise<Map<string, Set<string>>> {
  const good = new Map<string, Set<string>>();
  const { signal } = run.options;
  const jobs = [...toVerify].map(([id, digests]) => async () => {
    const ok = new Set<string>();
    good.set(id, ok);
    /** Copies whose check ended (an answer, good or not). */
    const answered = new Set<string>();
    let peer: Peer | undefined;
    try {
      peer = await run.connect(id);
      for (const digest of digests) {
        signal?.throwIfAborted();
        const size = run.stored.get(id)?.parts.get(digest) ?? 0;
        await run.verifyLimiter?.take(size, signal);
        let status: VerifyStatus;
        try {
          status = await peer.verifyPart(digest);
        } catch (error) {
          // An answer, not a lost instance: that copy is not good; its others are still checked.
          if (!(error instanceof RemoteProtocolError)) throw error;
          answered.add(digest);
          const refs = wanted.get(digest)?.refs ?? [];
          run.report.unchecked.push({ id, digest, refs, reason: error.message });
          run.emit({ type: "unchecked", id, digest, refs, reason: error.message });
          continue;
        }
        answered.add(digest);
        run.report.verified++;
        run.report.bytesVerified += size;
        if (status === "ok") ok.add(digest);
        if (status === "corrupt" || status === "quarantined") {
          // This disk rotted the part: a new copy goes elsewhere first (part_replicator.ts).
          run.stored.get(id)?.quarantined.add(digest);
        }
        if (status === "corrupt") {
          const refs = wanted.get(digest)?.refs ?? [];
          run.report.corrupt.push({ id, digest, refs });
          run.emit({ type: "corrupt", id, digest, refs });
        }
        run.tick();
      }
    } catch (error) {
      signal?.throwIfAborted();
      // The instance went away (or stalled) mid-check: none of its unchecked copies count,
      // and the report says so, one line for all of them.
      const reason = `${id} stopped answering mid-check: ${
        error instanceof Error ? error.message : String(error)
      }`;
      const unchecked = [...digests].filter((digest) => !answered.has(digest)).map((digest) => ({
        id,
        digest,
        refs: wanted.get(digest)?.refs ?? [],
        reason,
      }));
      run.report.unchecked.push(...unchecked);
      const first = unchecked[0];
      if (first) {
        const more = unchecked.length > 1 ? `; ${unchecked.length - 1} more copies there too` : "";
        run.emit({ type: "unchecked", ...first, reason: `${reason}${more}` });
      }
    } finally {
      peer?.close();
    }
  });
  await runPool(jobs, VERIFY_CONCURRENCY);
  return good;
}
