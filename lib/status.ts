/** What `fts status` reports: instances up or down, and each file's replica health. */
import { type ClusterConfig, instanceAddress, instanceIds } from "./config.ts";
import { probeInstances } from "./instances.ts";
import { readManifest } from "./manifest.ts";

export interface StatusReport {
  replicas: number;
  instances: {
    id: string;
    address: string;
    up: boolean;
    partsServed?: number;
    bytesServed?: number;
  }[];
  files: {
    name: string;
    size: number;
    parts: number;
    /** The fewest live replicas any part of the file has. */
    minLiveReplicas: number;
    /** Parts with fewer than R live replicas, and with none. */
    underReplicatedParts: number;
    lostParts: number;
  }[];
}

export async function clusterStatus(dir: string, config: ClusterConfig): Promise<StatusReport> {
  const probes = await probeInstances(
    instanceIds(config).map((id) => ({ id, address: instanceAddress(config, id) })),
  );
  const up = new Set(probes.filter((p) => p.up).map((p) => p.id));
  const manifest = await readManifest(dir);
  const files = Object.values(manifest.files)
    .sort((a, b) => a.name.localeCompare(b.name))
    .map((file) => {
      let minLive = file.parts.length === 0 ? config.replicas : Infinity;
      let under = 0;
      let lost = 0;
      for (const part of file.parts) {
        const live = part.replicas.filter((id) => up.has(id)).length;
        minLive = Math.min(minLive, live);
        if (live < config.replicas) under++;
        if (live === 0) lost++;
      }
      return {
        name: file.name,
        size: file.size,
        parts: file.parts.length,
        minLiveReplicas: minLive,
        underReplicatedParts: under,
        lostParts: lost,
      };
    });
  return {
    replicas: config.replicas,
    instances: probes.map((p) => ({
      id: p.id,
      address: p.address,
      up: p.up,
      ...(typeof p.stats?.partsServed === "number" ? { partsServed: p.stats.partsServed } : {}),
      ...(typeof p.stats?.bytesServed === "number" ? { bytesServed: p.stats.bytesServed } : {}),
    })),
    files,
  };
}
