/**
 * What a Peer (peer.ts) hands back: a file's entry with the addresses of its
 * instances, what an instance stores, pages of the file list, the cluster's
 * layout for an uploader, and who signs a part.put. Values, not frames.
 */
import type { FileEntry } from "../state/manifest.ts";
import type { FileSummary } from "../wire/ops_files.ts";
import type { Identity } from "../auth/identity.ts";

export interface FileInfo {
  entry: FileEntry;
  /** Instance id to "host:port". */
  instances: Record<string, string>;
  generation: number;
}

/** What part.list says an instance holds. */
export interface StoredParts {
  /** Digest to size in bytes. */
  parts: Map<string, number>;
  quarantined: Set<string>;
}

/** Where a walk of the file list stands: after this name, at this generation. */
export interface ListPosition {
  after?: string;
  generation?: number;
}

/** One page of the file list, and where the next one starts. */
export interface FilePage {
  files: FileSummary[];
  next: ListPosition;
  more: boolean;
}

/** What cluster.info tells an uploading client. */
export interface ClusterInfo {
  /** Names the cluster; signed requests carry it. */
  clusterId: string;
  replicas: number;
  partSize: number;
  /** Instance id to "host:port". */
  instances: Record<string, string>;
  /** Instance id to its failure domain, when the cluster spans hosts. */
  domains?: Record<string, string>;
  /** The asking key's quota and its published bytes (but the file named), when it has one. */
  quota?: { bytes: number; published: number };
  /** Whether the asking key is the operator's (absent: an instance too old to say). */
  operator?: boolean;
}

/** Who signs a part.put, and for which cluster (cluster.info's clusterId). */
export interface PartSigner {
  identity: Identity;
  cluster: string;
}
