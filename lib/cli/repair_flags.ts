/**
 * The flags `fts repair` and `fts scrub` share (rates, --unused-after, TLS,
 * how to print), parsed into plain values; the commands add their defaults
 * and checks with repairCommandOptions (lib/ui/repair_command.ts).
 */
import { boolFlag, durationFlag, type ParsedFlags, sizeFlag, stringFlag } from "./flags.ts";
import { loadTlsClientOptions, type TlsClientOptions } from "../wire/tls.ts";
import { UsageError } from "../wire/errors.ts";

/** Flags that repair and scrub share. */
export const REPAIR_FLAGS = {
  data: { type: "string" },
  "limit-rate": { type: "string" },
  "hash-rate": { type: "string" },
  "unused-after": { type: "string" },
  "tls-ca": { type: "string" },
  quiet: { type: "boolean", short: "q" },
  json: { type: "boolean" },
  etcd: { type: "string" },
  cluster: { type: "string" },
  "etcd-ca": { type: "string" },
} as const;

/** What the shared flags say, undefined where a flag was not given. */
export interface RepairFlagValues {
  /** --limit-rate, bytes per second copied. */
  copyRateBytesPerSecond: number | undefined;
  /** --hash-rate, bytes per second re-hashed. */
  verifyRateBytesPerSecond: number | undefined;
  /** TLS from --tls-ca (or FTS_TLS_CA). */
  tls: TlsClientOptions | undefined;
  /** --unused-after, in milliseconds. */
  unusedAfterMs: number | undefined;
  quiet: boolean;
  json: boolean;
}

/** Reads the shared flags of repair and scrub; a malformed size or duration is a usage error. */
export async function repairFlags(flags: ParsedFlags): Promise<RepairFlagValues> {
  return {
    copyRateBytesPerSecond: rateFlag(flags, "limit-rate"),
    verifyRateBytesPerSecond: rateFlag(flags, "hash-rate"),
    tls: await loadTlsClientOptions(stringFlag(flags, "tls-ca")),
    unusedAfterMs: durationFlag(flags, "unused-after"),
    quiet: boolFlag(flags, "quiet"),
    json: boolFlag(flags, "json"),
  };
}

/** A rate flag: 0 (no limit) or at least 1KiB per second (less would take hours a part). */
export function rateFlag(flags: ParsedFlags, name: string): number | undefined {
  const rate = sizeFlag(flags, name);
  if (rate !== undefined && rate > 0 && rate < 1024) {
    throw new UsageError(`--${name} must be 0 (no limit) or at least 1KiB`);
  }
  return rate;
}
