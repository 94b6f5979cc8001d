/**
 * What a repair or scrub says to people: one line per event worth a line
 * (copies, drops, corrupt, short and lost parts), the closing summary, and
 * the exit code with its closing complaint. `fts repair`, `fts scrub` and the
 * cluster's healing lines all print these.
 */
import { describePart, type RepairEvent, type RepairReport } from "../ops/repair.ts";
import { formatBytes, formatDuration } from "../base/units.ts";

/** One line for people per repair event; undefined for events not worth a line. */
export function formatRepairEvent(event: RepairEvent): string | undefined {
  switch (event.type) {
    case "waiting":
      return "waiting for the repair lock: another repair, scrub or healing run holds it " +
        "(this one starts when it ends)";
    case "census":
      return `census: ${event.live.length}/${
        event.live.length + event.down.length
      } instances answer` +
        (event.down.length > 0 ? `; down: ${event.down.join(", ")}` : "") +
        (event.failing ?? []).map(({ id, reason }) =>
          ` (${id} answers, but cannot list its parts: ${reason})`
        ).join("");
    case "corrupt":
      return `corrupt: the copy of ${
        describePart(event.digest, event.refs)
      } on ${event.id} fails its digest; quarantined there`;
    case "unchecked":
      return `unchecked: the copy of ${
        describePart(event.digest, event.refs)
      } on ${event.id} could not be re-hashed (${event.reason}); not counted as a good copy`;
    case "copy":
      return `${event.dryRun ? "would copy" : "copied"} ${
        describePart(event.digest, event.refs)
      } (${formatBytes(event.bytes)}): ${event.from} -> ${event.to}`;
    case "copy-failed":
      return `copy of ${
        describePart(event.digest, event.refs)
      } ${event.from} -> ${event.to} failed: ${event.reason}`;
    case "drop":
      return event.left
        ? `${event.dryRun ? "would unlist" : "unlisted"} surplus copy of ${
          describePart(event.digest, event.refs)
        } on ${event.id}: its host ${event.dryRun ? "would delete" : "deletes"} it`
        : `${event.dryRun ? "would drop" : "dropped"} surplus copy of ${
          describePart(event.digest, event.refs)
        } on ${event.id}`;
    case "drop-failed":
      return `could not delete the surplus copy of part ${
        event.digest.slice(0, 12)
      } on ${event.id} ` +
        `(${event.reason}); it stays there, off the manifest`;
    case "short":
      return `under-replicated: ${
        describePart(event.digest, event.refs)
      } has ${event.have} of ${event.want} copies; ${
        event.noSource
          ? "no copy could be read for another (see the failed copies above)"
          : "no other live instance can take one"
      }`;
    case "lost":
      return `LOST: ${describePart(event.digest, event.refs)} (digest ${
        event.digest.slice(0, 12)
      }): no good copy on any live instance` +
        (event.listed.length > 0 ? ` (listed on ${event.listed.join(", ")})` : "");
    case "manifest":
      return undefined;
  }
}

/** The closing line of a repair or scrub. */
export function formatRepairSummary(report: RepairReport, elapsedMs: number): string {
  const would = report.dryRun ? "would be " : "";
  const done: string[] = [];
  if (report.verified > 0) {
    done.push(
      `${_n(report.verified, "copy", "copies")} re-hashed (${formatBytes(report.bytesVerified)})`,
    );
  }
  if (report.corrupt.length > 0) {
    done.push(`${_n(report.corrupt.length, "corrupt copy", "corrupt copies")} quarantined`);
  }
  if (report.unchecked.length > 0) {
    done.push(`${_n(report.unchecked.length, "copy", "copies")} could not be re-hashed`);
  }
  if (report.copied > 0) {
    done.push(
      `${_n(report.copied, "copy", "copies")} ${would}made (${formatBytes(report.bytesCopied)})`,
    );
  }
  if (report.failedCopies > 0) done.push(`${_n(report.failedCopies, "copy attempt")} failed`);
  if (report.dropped > 0) {
    done.push(`${_n(report.dropped, "surplus copy", "surplus copies")} ${would}dropped`);
  }
  if (report.droppedElsewhere > 0) {
    done.push(
      `${_n(report.droppedElsewhere, "surplus copy", "surplus copies")} on other hosts ${would}` +
        "unlisted, for their hosts to delete",
    );
  }
  if (report.failedDrops > 0) {
    done.push(`${_n(report.failedDrops, "surplus copy", "surplus copies")} could not be deleted`);
  }
  if (report.manifestParts > 0) {
    done.push(
      `manifest ${would}updated for ${_n(report.manifestParts, "part entry", "part entries")}`,
    );
  }
  if (report.short.length > 0) {
    done.push(`${_n(report.short.length, "part")} still under-replicated`);
  }
  if (report.lost.length > 0) done.push(`${_n(report.lost.length, "part")} LOST`);
  if (report.unused.parts > 0) {
    done.push(
      `${_n(report.unused.parts, "part")} no file uses ${would}deleted (${
        _n(report.unused.copies, "copy", "copies")
      }, ${formatBytes(report.unused.bytes)})`,
    );
  }
  const elsewhere = report.unusedElsewhere;
  if (elsewhere.copies > 0) {
    done.push(
      `${_n(elsewhere.copies, "copy", "copies")} of ${
        _n(elsewhere.parts, "part")
      } no file uses on other hosts ${would}left to their hosts (${
        formatBytes(elsewhere.bytes)
      }; each deleted there if untouched for ${formatDuration(report.unusedKept.unusedAfterMs)})`,
    );
  }
  const what = done.length > 0
    ? done.join(", ")
    : report.parts === 1
    ? "nothing to do, the one part has its copies"
    : `nothing to do, every one of ${report.parts} parts has its copies`;
  const kept = report.unusedKept;
  return `${what} (${report.live.length}/${report.live.length + report.down.length} instances up, ${
    formatDuration(elapsedMs)
  })` + (kept.parts > 0 ? `; ${formatUnusedSpace({ ...kept, young: undefined })}` : "");
}

/**
 * The line saying how much space parts no file uses hold: left by deletes
 * interrupted midway and uploads never published, they stay until a repair
 * finds them untouched for `unusedAfterMs`. `young` of them were touched
 * since (not deletable yet); undefined when unknown.
 */
export function formatUnusedSpace(unused: {
  parts: number;
  copies: number;
  bytes: number;
  young: number | undefined;
  unusedAfterMs: number;
}): string {
  const young = unused.young === undefined || unused.young === unused.parts
    ? ""
    : `, ${unused.young} of them touched within ${formatDuration(unused.unusedAfterMs)}`;
  const when = unused.unusedAfterMs > 0
    ? `deleted after ${formatDuration(unused.unusedAfterMs)} untouched (fts repair --unused-after)`
    : "kept, as --unused-after 0 says";
  return `unused: ${_n(unused.parts, "part")} (${formatBytes(unused.bytes)} in ${
    _n(unused.copies, "copy", "copies")
  }) no file uses${young}; ${when}`;
}

/** The exit code and closing complaint of a repair or scrub that could not do everything. */
export function repairOutcome(report: RepairReport): { code: number; error?: string } {
  if (report.lost.length > 0) {
    const files = [...new Set(report.lost.flatMap((l) => l.refs.map((r) => r.file)))];
    return {
      code: 1,
      error: `${_n(report.lost.length, "part")} without a good copy (files: ${
        files.map((f) => JSON.stringify(f)).join(", ")
      }); bring their instances back (fts start PORT) or upload the files again`,
    };
  }
  if (report.short.length > 0) {
    return {
      code: 1,
      error: `${_n(report.short.length, "part")} with fewer copies than R: too few live instances`,
    };
  }
  if (report.unchecked.length > 0) {
    const ids = [...new Set(report.unchecked.map((u) => u.id))].sort();
    return {
      code: 1,
      error: `${_n(report.unchecked.length, "copy", "copies")} on ${
        ids.join(", ")
      } could not be re-hashed (${report.unchecked[0]!.reason}); their instances' logs say more`,
    };
  }
  if (report.failedDrops > 0) {
    return {
      code: 1,
      error: `${
        _n(report.failedDrops, "surplus copy", "surplus copies")
      } could not be deleted (the lines above say where and why); is that store writable?`,
    };
  }
  return { code: 0 };
}

function _n(count: number, singular: string, plural = `${singular}s`): string {
  return `${count} ${count === 1 ? singular : plural}`;
}
