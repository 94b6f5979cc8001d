/**
 * What an upload tells its caller: events as they happen (the cluster it
 * reached, failovers, re-publishing), progress counters for a bar or JSON
 * lines, and the result once the file is published.
 */

export type UploadEvent =
  | { type: "cluster"; from: string; replicas: number; partSize: number }
  | { type: "failover"; part: number; instance: string; reason: string }
  | { type: "republish"; reason: string };

export interface UploadProgress {
  name: string;
  phase: "locating" | "sending" | "checking" | "publishing" | "done";
  size: number;
  parts: number;
  /** Parts (and their bytes) that have all R copies. */
  partsDone: number;
  bytesDone: number;
  /** Parts whose every copy was already stored before this run, and their bytes. */
  partsPresent: number;
  bytesPresent: number;
  /**
   * Bytes of parts not yet done, each counted as the share of its copies sent
   * so far: moves between the steps of bytesDone, for a smooth progress bar.
   */
  bytesInFlight: number;
  /** Copies found already stored, and copies sent. */
  copiesPresent: number;
  copiesSent: number;
  /** Part bytes written to sockets, over all copies and attempts. */
  bytesSent: number;
  failovers: number;
  elapsedMs: number;
}

export interface UploadResult extends UploadProgress {
  contentId: string;
  generation: number;
  /** True when the cluster already had this exact file under this name, from you. */
  unchanged: boolean;
  replicas: number;
  /** The part size the file was split into (the cluster's, for new files). */
  partSize: number;
}
