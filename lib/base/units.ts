const SIZE_UNITS: Record<string, number> = {
  "": 1,
  b: 1,
  k: 1024,
  kb: 1000,
  kib: 1024,
  m: 1024 ** 2,
  mb: 1000 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gb: 1000 ** 3,
  gib: 1024 ** 3,
  t: 1024 ** 4,
  tb: 1000 ** 4,
  tib: 1024 ** 4,
};

/**
 * Parses a byte size such as `8MiB`, `512k`, `1.5GB` or `4096`.
 * Binary units (KiB, MiB, and the bare K, M, G) are powers of 1024; KB, MB, GB are powers of 1000.
 */
export function parseSize(text: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(text);
  if (!match) {
    throw new SyntaxError(`Cannot parse size "${text}": expected a number with an optional unit`);
  }
  const unit = SIZE_UNITS[match[2]!.toLowerCase()];
  if (unit === undefined) {
    throw new SyntaxError(
      `Cannot parse size "${text}": unknown unit "${
        match[2]
      }" (use B, KiB, MiB, GiB, TiB, KB, MB, GB)`,
    );
  }
  const value = Math.round(Number(match[1]) * unit);
  if (!Number.isSafeInteger(value)) throw new RangeError(`Size "${text}" is too large`);
  return value;
}

/** Parses a duration such as `2s`, `500ms`, `1m`, `24h`, `7d` or a bare number of seconds. */
export function parseDurationMs(text: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$/.exec(text);
  if (!match) {
    throw new SyntaxError(`Cannot parse duration "${text}": expected e.g. 500ms, 2s, 1m, 24h, 7d`);
  }
  const factor = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[match[2] ?? "s"] ??
    1000;
  return Math.round(Number(match[1]) * factor);
}

/** Formats a byte count for people: `1.5 GiB`. */
export function formatBytes(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let index = 0;
  while (Math.abs(value) >= 1024 && index < units.length - 1) {
    value /= 1024;
    index++;
  }
  return index === 0 ? `${bytes} B` : `${value.toFixed(value >= 100 ? 0 : 1)} ${units[index]}`;
}

/** Formats a duration in milliseconds for people: `1.2 s`, `3m05s`. */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms)) return "?";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  const total = Math.round(ms / 1000);
  const hours = Math.floor(total / 3600);
  const minutes = Math.floor((total % 3600) / 60);
  const seconds = String(total % 60).padStart(2, "0");
  return hours > 0 ? `${hours}h${String(minutes).padStart(2, "0")}m` : `${minutes}m${seconds}s`;
}

/** `n` and the noun for it: "1 part", "3 parts" (`many` for irregular plurals). */
export function plural(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`;
}

/** A moment as the local time of day, HH:MM:SS, as every clock fts shows reads. */
export function clock(ms: number): string {
  const d = new Date(ms);
  return [d.getHours(), d.getMinutes(), d.getSeconds()].map((n) => String(n).padStart(2, "0"))
    .join(":");
}
