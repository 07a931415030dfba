// Names on the NATS side (docs/protocol.md): public API subjects, shard subjects, the
// write-log streams and the metadata buckets, all under one prefix.

export interface Names {
  prefix: string;
  api(collection: string, op: string): string;
  admin(op: string): string;
  shard(collection: string, shard: number, op: string): string;
  /** One replica's own subject for a shard (the shard subject goes to any of them). */
  replica(collection: string, shard: number, member: string, op: string): string;
  log(collection: string, shard: number): string;
  stream(collection: string, shard: number): string;
  /** The stream whose sequence numbers a collection's write versions (cluster/versions.ts), and its subject. */
  versionStream(collection: string): string;
  version(collection: string): string;
  bucket(kind: 'collections' | 'shardmap' | 'members' | 'leases'): string;
}

export function names(prefix = 'vdb'): Names {
  const upper = prefix.toUpperCase().replace(/[^A-Z0-9_-]/g, '_');
  return {
    prefix,
    api: (collection, op) => `${prefix}.v1.${collection}.${op}`,
    admin: (op) => `${prefix}.v1._admin.${op}`,
    shard: (collection, shard, op) => `${prefix}.shard.${collection}.${shard}.${op}`,
    replica: (collection, shard, member, op) => `${prefix}.shard.${collection}.${shard}.${member}.${op}`,
    log: (collection, shard) => `${prefix}.log.${collection}.${shard}`,
    stream: (collection, shard) => `${upper}_LOG_${collection}_${shard}`,
    versionStream: (collection) => `${upper}_VER_${collection}`,
    version: (collection) => `${prefix}.ver.${collection}`,
    bucket: (kind) => `${prefix}_${kind}`.replace(/[^A-Za-z0-9_-]/g, '_'),
  };
}
