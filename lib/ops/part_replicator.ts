/**
 * Copying a part that has fewer than R good copies to the best-ranked live
 * instances that lack it (placement.ts), over the network and within the
 * repair's copy rate; the target verifies the digest before the copy becomes
 * visible. A source that fails is dropped for this part (and reported when
 * its copy is corrupt); the copies it ends with are noted for the manifest.
 */
import { ProtocolError } from "../wire/errors.ts";
import { rankAcrossDomains } from "../state/placement.ts";
import { CopyError, copyPart } from "./part_copy.ts";
import { type RepairManifest } from "./repair_manifest.ts";
import { type RepairRun, type WantedPart } from "./repair_run.ts";
import { type Peer } from "../client/peer.ts";
import { type Identity } from "../auth/identity.ts";

export class PartReplicator {
  readonly #run: RepairRun;
  readonly #manifest: RepairManifest;
  /** Copies being sent from each instance, to spread the reads. */
  readonly #sending = new Map<string, number>();
  /**
   * Instances a copy timed out on (stopped, a hung disk: connections are
   * still accepted): left out for the rest of the run, or each copy tried
   * with them waited out the stall timeout (30 s) again.
   */
  readonly #stalled = new Set<string>();

  #identity: Promise<Identity | undefined> | undefined;

  constructor(run: RepairRun, manifest: RepairManifest) {
    this.#run = run;
    this.#manifest = manifest;
  }

  /** The operator's key when this host has it (read once per run). */
  #copyIdentity(): Promise<Identity | undefined> {
    return this.#identity ??= this.#run.target.copyIdentity();
  }

  /**
   * Copies a part to `deficit` more instances, best-ranked first; returns the
   * good copies it ends with. With `spread`, the part has its R copies and
   * these only add failure domains: one that cannot be made leaves it as it was.
   */
  async replicate(
    part: WantedPart,
    have: Set<string>,
    deficit: number,
    options: { spread?: boolean } = {},
  ): Promise<Set<string>> {
    const { digest, size, refs } = part;
    const sources = [...have].filter((id) => !this.#stalled.has(id));
    const live = [...this.#run.stored.keys()];
    // A quarantine says this disk rotted the part once: try it last.
    // Failure domains that hold no copy yet come first, then the rest in rank order.
    const { domain } = this.#run.target.view;
    const held = new Set([...have].map(domain));
    const candidates = rankAcrossDomains(
      digest,
      live.filter((id) => !have.has(id) && !(options.spread && held.has(domain(id)))),
      domain,
    )
      .sort((a, b) => Number(held.has(domain(a))) - Number(held.has(domain(b))))
      .sort((a, b) =>
        Number(this.#run.stored.get(a)!.quarantined.has(digest)) -
        Number(this.#run.stored.get(b)!.quarantined.has(digest))
      );
    const final = new Set(have);
    let missing = deficit;
    for (const target of candidates) {
      if (missing === 0 || sources.length === 0) break;
      if (this.#stalled.has(target)) continue;
      if (this.#run.dryRun) {
        this.#run.emit({
          type: "copy",
          digest,
          refs,
          from: sources[0]!,
          to: target,
          bytes: size,
          dryRun: true,
        });
        final.add(target);
        missing--;
        this.#run.report.copied++;
        this.#run.report.bytesCopied += size;
        this.#run.tick();
        continue;
      }
      while (sources.length > 0) {
        this.#run.options.signal?.throwIfAborted();
        const source = this.#pickSource(sources);
        this.#sending.set(source, (this.#sending.get(source) ?? 0) + 1);
        let moved = 0;
        try {
          await copyPart({
            source: this.#run.address(source),
            target: this.#run.address(target),
            digest,
            size,
            limiter: this.#run.copyLimiter,
            signal: this.#run.options.signal,
            tls: this.#run.options.tls,
            identity: await this.#copyIdentity(),
            onBytes: (bytes) => {
              moved += bytes;
              this.#run.bytesCopying += bytes;
              this.#run.tick();
            },
          });
          // Done: its bytes move from under way to copied.
          this.#run.bytesCopying -= moved;
          moved = 0;
          final.add(target);
          missing--;
          this.#run.report.copied++;
          this.#run.report.bytesCopied += size;
          this.#run.emit({
            type: "copy",
            digest,
            refs,
            from: source,
            to: target,
            bytes: size,
            dryRun: false,
          });
          break;
        } catch (error) {
          this.#run.options.signal?.throwIfAborted();
          if (!(error instanceof CopyError)) throw error;
          this.#run.report.failedCopies++;
          this.#run.emit({
            type: "copy-failed",
            digest,
            refs,
            from: source,
            to: target,
            reason: error.message,
          });
          if (_timedOut(error)) this.#stalled.add(error.side === "target" ? target : source);
          if (error.side === "target") break;
          // This source cannot give the part now; it stays listed unless its copy is gone.
          sources.splice(sources.indexOf(source), 1);
          if (error.corruptSource || _copyIsGone(error)) final.delete(source);
          if (error.corruptSource) await this.#reportCorrupt(source, part);
        } finally {
          this.#sending.set(source, this.#sending.get(source)! - 1);
          // A failed copy's bytes were never copied.
          this.#run.bytesCopying -= moved;
          this.#run.tick();
        }
      }
    }
    if (final.size === 0) {
      this.#run.lost(part);
      return final;
    }
    if (missing > 0 && !options.spread) {
      const have = final.size;
      this.#run.report.short.push({ digest, refs, have });
      this.#run.emit({
        type: "short",
        digest,
        refs,
        have,
        want: this.#run.replicas,
        noSource: sources.length === 0,
      });
    }
    this.#manifest.record(part, final);
    await this.#manifest.flushIfDue();
    return final;
  }

  #pickSource(sources: string[]): string {
    return sources.reduce((best, id) =>
      (this.#sending.get(id) ?? 0) < (this.#sending.get(best) ?? 0) ? id : best
    );
  }

  /** Tells the instance its copy failed; it re-hashes and quarantines it. */
  async #reportCorrupt(id: string, part: WantedPart): Promise<void> {
    let peer: Peer | undefined;
    try {
      peer = await this.#run.connect(id);
      if (await peer.report(part.digest)) {
        this.#run.report.corrupt.push({ id, digest: part.digest, refs: part.refs });
        this.#run.emit({ type: "corrupt", id, digest: part.digest, refs: part.refs });
      }
    } catch {
      // Gone as well; it is not counted either way.
    } finally {
      peer?.close();
    }
  }
}

/** The copy waited out a stall timeout on its source or target. */
function _timedOut(error: CopyError): boolean {
  return error.cause instanceof ProtocolError && error.cause.code === "TIMEOUT";
}

/** The source answered that it no longer has a servable copy. */
function _copyIsGone(error: CopyError): boolean {
  const cause = error.cause;
  return cause instanceof ProtocolError &&
    (cause.code === "NOT_FOUND" || cause.code === "QUARANTINED");
}
