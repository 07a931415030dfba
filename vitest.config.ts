import { defineConfig } from 'vitest/config';

// Tests that run clusters of real processes and kill them go one file at a
// time, after the others: on 2 cores, two such files at once starve each
// other's processes past their deadlines and leases.
const PROCESS_TESTS = [
  'test/cluster.test.ts',
  'test/replication.test.ts',
  'test/storage-fault.test.ts',
  'test/nats-faults.test.ts',
  'test/chaos.test.ts',
  'test/supervisor.test.ts',
  'test/capacity.test.ts',
  'test/reads.test.ts',
  'test/lifecycle.test.ts',
  'test/moves.test.ts',
  'test/elastic.test.ts',
  'test/elastic-load.test.ts',
  'test/load-split.test.ts',
  'test/model.test.ts',
  'test/security.test.ts',
  'test/demo.test.ts',
  'test/process-logs.test.ts',
  'test/backup.test.ts',
  'test/prometheus.test.ts',
  'test/console.test.ts',
  'test/deploy.test.ts',
  'test/sq8-cluster.test.ts',
  'test/payload-indexes.test.ts',
  'test/shard-merge.test.ts',
];

export default defineConfig({
  test: {
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: 'forks',
    projects: [
      { extends: true, test: { name: 'library', include: ['test/**/*.test.ts'], exclude: PROCESS_TESTS, sequence: { groupOrder: 0 } } },
      { extends: true, test: { name: 'processes', include: PROCESS_TESTS, fileParallelism: false, sequence: { groupOrder: 1 } } },
    ],
  },
});
