/**
 * A host's address as a certificate names it: an IP address (v4 or v6, as
 * the 4 or 16 bytes an iPAddress subject-alternative name holds) or a DNS
 * name. Anything else is a usage error, said with the value given.
 */
import { UsageError } from "./errors.ts";

export type HostAddress =
  | { kind: "ip"; text: string; bytes: Uint8Array }
  | { kind: "dns"; text: string };

/** Longest DNS name and label (RFC 1035). */
const MAX_DNS_NAME = 253;
const _DNS_LABEL = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/i;
const _IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

function _ipv4Bytes(text: string): Uint8Array | undefined {
  return _IPV4.test(text) ? Uint8Array.from(text.split("."), Number) : undefined;
}

function _ipv6Bytes(text: string): Uint8Array | undefined {
  if (!text.includes(":") || text.split("::").length > 2) return undefined;
  const toGroups = (part: string): number[] | undefined => {
    if (part === "") return [];
    const groups: number[] = [];
    const pieces = part.split(":");
    for (const [i, piece] of pieces.entries()) {
      const v4 = i === pieces.length - 1 ? _ipv4Bytes(piece) : undefined;
      if (v4) groups.push((v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!);
      else if (/^[0-9a-f]{1,4}$/i.test(piece)) groups.push(parseInt(piece, 16));
      else return undefined;
    }
    return groups;
  };
  const [head, tail] = text.split("::");
  const before = toGroups(head!);
  const after = tail === undefined ? [] : toGroups(tail);
  if (before === undefined || after === undefined) return undefined;
  const missing = 8 - before.length - after.length;
  if (tail === undefined ? missing !== 0 : missing < 1) return undefined;
  const groups = [
    ...before,
    ...new Array<number>(tail === undefined ? 0 : missing).fill(0),
    ...after,
  ];
  return Uint8Array.from(groups.flatMap((group) => [group >> 8, group & 0xff]));
}

/** Parses `--host ADDR`: an IPv4 or IPv6 address, or a DNS name. */
export function parseHostAddress(text: string): HostAddress {
  const ip = _ipv4Bytes(text) ?? _ipv6Bytes(text.replace(/^\[(.*)\]$/, "$1"));
  if (ip) return { kind: "ip", text: text.replace(/^\[(.*)\]$/, "$1"), bytes: ip };
  const name = text.endsWith(".") ? text.slice(0, -1) : text;
  const labels = name.split(".");
  // An all-digit top label is a mistyped IPv4 address (10.0.0.300), never a name (RFC 3696).
  if (
    name.length <= MAX_DNS_NAME && labels.every((label) => _DNS_LABEL.test(label)) &&
    !/^\d+$/.test(labels.at(-1)!)
  ) {
    return { kind: "dns", text: name.toLowerCase() };
  }
  throw new UsageError(
    `Bad host address ${JSON.stringify(text)}: expected an IP address or a DNS name`,
  );
}

/** Whether `hostname` listens on every address of the machine (0.0.0.0, ::). */
export function isWildcardAddress(hostname: string): boolean {
  const bare = hostname.replace(/^\[(.*)\]$/, "$1");
  return bare === "0.0.0.0" || (bare.includes(":") && /^(?:0*:)*:?0*$/.test(bare));
}
