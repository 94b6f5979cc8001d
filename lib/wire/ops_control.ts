/**
 * Control ops: the hello that opens every connection, ping, an instance's
 * counters, and what an uploading client asks about the cluster. See ops.ts
 * for the table these entries join.
 * PROTOCOL.md "Messages: control" describes each message and its fields.
 */
import { ProtocolError } from "./errors.ts";
import { type Header } from "./frame.ts";
import { addressMap, stringField, uintField } from "./header_fields.ts";
import { defineOp, opFamily } from "./op_spec.ts";

/** Longest agent string kept from a hello; the rest is dropped. */
const MAX_AGENT_CHARS = 200;

export type HelloRequest = { op: "hello"; version: number; agent?: string };
/** `generation` is null when the instance cannot read its manifest (it still serves parts). */
export type HelloReply = { op: "hello"; version: number; id: string; generation: number | null };
export type PingRequest = { op: "ping" };
export type PongReply = { op: "pong" };
export type StatsRequest = { op: "stats" };
/** The instance id, its uptime and every counter of lib/server/handler.ts ServerCounters. */
export type StatsReply = { op: "stats"; id: string; uptimeMs: number; [counter: string]: unknown };
/**
 * With `key` (an uploader's owner string) and `name` (the file it means to
 * publish), the reply says that key's quota, if it has one.
 */
export type ClusterInfoRequest = { op: "cluster.info"; key?: string; name?: string };
/**
 * `clusterId` names the cluster: signed requests carry it (ops_signed.ts).
 * `quotaBytes` and `publishedBytes` (its published files but `name`), when
 * the request named a key that has a quota.
 */
export type ClusterReply = {
  op: "cluster";
  replicas: number;
  partSize: number;
  clusterId: string;
  quotaBytes?: number;
  publishedBytes?: number;
  /** With `key` in the request: whether that key is the cluster's operator's. */
  operator?: boolean;
};
export type ClusterReplyBody = {
  instances: Record<string, string>;
  /** Each instance's failure domain, when the cluster spans hosts (absent: one domain). */
  domains?: Record<string, string>;
};

export const CONTROL_OPS = opFamily({
  "hello": defineOp<HelloRequest, HelloReply>({
    parseRequest: (header) => {
      const agent = header.agent;
      return {
        op: "hello",
        version: uintField(header, "version"),
        ...(typeof agent === "string" ? { agent: agent.slice(0, MAX_AGENT_CHARS) } : {}),
      };
    },
    requestBody: false,
    replyOp: "hello",
    parseReply: (header) => ({
      op: "hello",
      version: uintField(header, "version", "BAD_FRAME"),
      id: stringField(header, "id", "BAD_FRAME"),
      generation: header.generation === null ? null : uintField(header, "generation", "BAD_FRAME"),
    }),
    replyBody: "none",
  }),
  "ping": defineOp<PingRequest, PongReply>({
    parseRequest: () => ({ op: "ping" }),
    requestBody: false,
    replyOp: "pong",
    parseReply: () => ({ op: "pong" }),
    replyBody: "none",
  }),
  "stats": defineOp<StatsRequest, StatsReply>({
    parseRequest: () => ({ op: "stats" }),
    requestBody: false,
    replyOp: "stats",
    // Counters come and go between versions: every field is kept as sent.
    parseReply: (header: Header) => ({
      ...header,
      op: "stats",
      id: stringField(header, "id", "BAD_FRAME"),
      uptimeMs: uintField(header, "uptimeMs", "BAD_FRAME"),
    }),
    replyBody: "none",
  }),
  "cluster.info": defineOp<ClusterInfoRequest, ClusterReply, ClusterReplyBody>({
    parseRequest: (header) => ({
      op: "cluster.info",
      ...(header.key !== undefined ? { key: stringField(header, "key") } : {}),
      ...(header.name !== undefined ? { name: stringField(header, "name") } : {}),
    }),
    requestBody: false,
    replyOp: "cluster",
    parseReply: (header) => ({
      op: "cluster",
      replicas: uintField(header, "replicas", "BAD_FRAME"),
      partSize: uintField(header, "partSize", "BAD_FRAME"),
      clusterId: stringField(header, "clusterId", "BAD_FRAME"),
      ...(header.quotaBytes !== undefined
        ? {
          quotaBytes: uintField(header, "quotaBytes", "BAD_FRAME"),
          publishedBytes: uintField(header, "publishedBytes", "BAD_FRAME"),
        }
        : {}),
      ...(typeof header.operator === "boolean" ? { operator: header.operator } : {}),
    }),
    replyBody: (value) => {
      const body = value as { instances?: unknown; domains?: unknown } | null;
      const instances = addressMap(body?.instances);
      if (Object.keys(instances).length === 0) {
        throw new ProtocolError("BAD_FRAME", "cluster.info reply names no instance");
      }
      const domains = addressMap(body?.domains);
      return Object.keys(domains).length > 0 ? { instances, domains } : { instances };
    },
  }),
});
