/**
 * The manifest's domain types: a file entry lists a file's parts, each part's
 * SHA-256 (and XXH3-128) and its replicas. Here are the entry's validation,
 * file names and content ids; where entries are kept and how they change is
 * the manifest store's business (manifest_store.ts).
 */
import { DIGEST_PATTERN, XXH128_PATTERN } from "../hash/digest_patterns.ts";
import { sha256HexSync } from "../hash/sha256.ts";
import { hasUnprintable, printable } from "../base/printable.ts";

export const MANIFEST_FORMAT = "fts-manifest";
export const MANIFEST_VERSION = 1;
/** Longest file name, in UTF-8 bytes (as most filesystems allow). */
export const MAX_NAME_BYTES = 255;
/** Who owns files that the operator placed with `fts preload`. */
export const OPERATOR_OWNER = "operator";
/**
 * Fetch keeps its helper files beside a destination NAME as NAME plus one of
 * these (the partial file, the control file, the job lock; see
 * client/helper_paths.ts). A file named so could be overwritten or deleted by
 * a fetch of another file: no new file may have such a name, and fetch
 * refuses one stored before this rule.
 */
export const FETCH_HELPER_SUFFIXES = [".fts-partial", ".fts-state", ".fts-lock"] as const;

export interface PartEntry {
  /** SHA-256 of the part's bytes, lowercase hex. */
  digest: string;
  /**
   * XXH3-128 of the same bytes, lowercase hex (xxh128.ts): lets fetch check
   * the parts a destination already holds at the speed of reading them.
   * Absent in entries written before fts had it; fetch then uses `digest`.
   */
  xxh128?: string;
  /** Bytes in this part; every part but the last is `partSize` long. */
  size: number;
  /** Instance ids (ports) that hold a copy. */
  replicas: string[];
}

export interface FileEntry {
  name: string;
  size: number;
  partSize: number;
  /** SHA-256 over the part digests and size: names this exact content. */
  contentId: string;
  owner: string;
  created: string;
  parts: PartEntry[];
}

/** Checks a file name from a user or the network; throws TypeError on a bad one. */
export function validateFileName(name: unknown): string {
  if (typeof name !== "string" || name.length === 0) {
    throw new TypeError("File name must not be empty");
  }
  if (new TextEncoder().encode(name).length > MAX_NAME_BYTES) {
    throw new TypeError(`File name is longer than ${MAX_NAME_BYTES} bytes`);
  }
  if (name === "." || name === "..") throw new TypeError(`File name "${name}" is not allowed`);
  if (name.includes("/") || name.includes("\\")) {
    throw new TypeError(`File name "${name}" must not contain a slash`);
  }
  // deno-lint-ignore no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(name)) {
    throw new TypeError(`File name ${JSON.stringify(name)} contains a control character`);
  }
  return name;
}

/**
 * Checks a name a file is about to get (upload, preload, rename): besides
 * validateFileName's rules, no C1 control or bidirectional mark (invisible,
 * and able to reorder or hide what a terminal shows), and Unicode NFC, so that
 * two names that look the same are the same name. Names already stored are
 * read with validateFileName alone, so that older manifests still load.
 */
export function validateNewFileName(name: unknown): string {
  const checked = validateFileName(name);
  if (hasUnprintable(checked)) {
    throw new TypeError(
      `File name "${printable(checked)}" contains a C1 control or bidirectional character`,
    );
  }
  if (checked.normalize("NFC") !== checked) {
    throw new TypeError(`File name "${printable(checked)}" is not in Unicode NFC form`);
  }
  const reserved = helperSuffixOf(checked);
  if (reserved !== undefined) {
    throw new TypeError(
      `File name "${
        printable(checked)
      }" ends in ${reserved}, which fetch keeps for its own files beside a download`,
    );
  }
  return checked;
}

/**
 * The helper suffix (FETCH_HELPER_SUFFIXES) `name` ends in, in any case (a
 * file system may not tell cases apart), or undefined.
 */
export function helperSuffixOf(name: string): string | undefined {
  const lower = name.toLowerCase();
  return FETCH_HELPER_SUFFIXES.find((suffix) => lower.endsWith(suffix));
}

/**
 * A name typed by a user, in the form the cluster stores names: NFC, so that
 * "e" + combining acute finds the file uploaded as the precomposed "é".
 */
export function normalizeFileName(name: string): string {
  return name.normalize("NFC");
}

/** The content id of a list of parts: changes whenever any byte of the file would. */
export function contentIdOf(size: number, parts: readonly { digest: string }[]): string {
  // Synchronous, so that parsing an entry stays synchronous; 64 bytes a part.
  return sha256HexSync(`fts-content-v1:${size}:${parts.map((part) => part.digest).join("")}`);
}

function _fail(what: string): never {
  throw new SyntaxError(`Manifest is malformed: ${what}`);
}

export interface ParseOptions {
  /**
   * The entry was read from a manifest store by an instance serving it: a
   * well-formed `contentId` it carries is taken as it is, not computed again.
   * Its writer computed it before publishing, and every client that receives
   * the entry computes it again; in an instance (no optimizing compiler) the
   * SHA-256 in JavaScript was a fifth of the work of serving small files.
   */
  storedContentId?: boolean;
}

/** Validates a file entry from disk or the network. */
export function parseFileEntry(value: unknown, options: ParseOptions = {}): FileEntry {
  const v = value as Record<string, unknown> | null;
  if (typeof v !== "object" || v === null) _fail("entry is not an object");
  let name: string;
  try {
    name = validateFileName(v.name);
  } catch (cause) {
    throw new SyntaxError(`Manifest is malformed: ${(cause as Error).message}`, { cause });
  }
  const { size, partSize } = v;
  if (typeof size !== "number" || !Number.isSafeInteger(size) || size < 0) _fail("bad size");
  if (typeof partSize !== "number" || !Number.isSafeInteger(partSize) || partSize < 1) {
    _fail("bad partSize");
  }
  if (!Array.isArray(v.parts)) _fail("parts is not a list");
  const expectedParts = size === 0 ? 0 : Math.ceil(size / partSize);
  if (v.parts.length !== expectedParts) _fail(`"${name}" has ${v.parts.length} parts`);
  const parts: PartEntry[] = v.parts.map((p: unknown, index: number) => {
    const part = p as Record<string, unknown> | null;
    if (typeof part !== "object" || part === null) _fail(`part ${index} is not an object`);
    const expectedSize = Math.min(partSize, size - index * partSize);
    if (typeof part.digest !== "string" || !DIGEST_PATTERN.test(part.digest)) {
      _fail(`part ${index} of "${name}" has a bad digest`);
    }
    if (part.size !== expectedSize) _fail(`part ${index} of "${name}" has a bad size`);
    if (!Array.isArray(part.replicas) || !part.replicas.every((r) => typeof r === "string")) {
      _fail(`part ${index} of "${name}" has bad replicas`);
    }
    // Only a hint (a faster local check): a malformed one is dropped, and the
    // part is checked with its SHA-256, rather than failing the whole manifest.
    const fast = typeof part.xxh128 === "string" && XXH128_PATTERN.test(part.xxh128)
      ? part.xxh128
      : undefined;
    return {
      digest: part.digest,
      ...(fast !== undefined ? { xxh128: fast } : {}),
      size: expectedSize,
      replicas: [...part.replicas] as string[],
    };
  });
  const stored = options.storedContentId && typeof v.contentId === "string" &&
      DIGEST_PATTERN.test(v.contentId)
    ? v.contentId
    : undefined;
  const contentId = stored ?? contentIdOf(size, parts);
  if (v.contentId !== undefined && v.contentId !== contentId) _fail(`"${name}" contentId`);
  return {
    name,
    size,
    partSize,
    contentId,
    owner: typeof v.owner === "string" ? v.owner : OPERATOR_OWNER,
    created: typeof v.created === "string" ? v.created : "",
    parts,
  };
}
