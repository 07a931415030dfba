#!/usr/bin/env node
// The `vdb` command. Each sub-command is one entry of COMMANDS and one
// function; for now the embedded ones (import, search) that work on a data
// directory directly. Exit status: 0 done, 1 an error (one line on stderr,
// "vdb <command>: CODE: message"), 2 a usage error, 130 interrupted.

import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { ParseArgsConfig } from 'node:util';
import { Collection, ErrorCode, VdbError } from '../ts/index.js';
import type { Filter, Hit, Metric, Quantization } from '../ts/index.js';
import { FORMATS, openReader } from './readers.js';
import { CLUSTER_COMMANDS, clusterImport, clusterSearch } from './cluster-commands.js';
import { USER_COMMANDS } from './user-commands.js';
import { BACKUP_COMMANDS } from './backup-commands.js';
import { CONSOLE_COMMANDS } from './console-command.js';
import type { Format, VectorReader } from './readers.js';
import { RateProgress, duration } from './progress.js';

interface Command {
  summary: string;
  help: string;
  run(argv: string[]): Promise<void>;
}

/** A mistake in the command line: reported with a pointer to --help, exit status 2. */
class UsageError extends Error {}

/** Ends the command with this exit status, its message (if any) already printed. */
class Exit extends Error {
  constructor(readonly status: number) {
    super(`exit ${status}`);
  }
}

type Options = NonNullable<ParseArgsConfig['options']>;

function parse<const O extends Options>(argv: string[], options: O) {
  try {
    return parseArgs({ args: argv, options, strict: true, allowPositionals: true });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

function required(value: string | undefined, flag: string): string {
  if (value === undefined || value === '') throw new UsageError(`${flag} is required`);
  return value;
}

function integer(value: string | undefined, flag: string, min: number, fallback?: number): number | undefined {
  if (value === undefined) return fallback;
  if (!/^-?\d+$/.test(value.trim()) || !Number.isSafeInteger(Number(value)) || Number(value) < min) {
    throw new UsageError(`${flag} must be an integer${min > 0 ? ` of at least ${min}` : ' of 0 or more'}, got ${JSON.stringify(value)}`);
  }
  return Number(value);
}

const METRICS: Metric[] = ['l2', 'ip', 'cosine'];

function metricOption(value: string | undefined): Metric | undefined {
  if (value === undefined) return undefined;
  if (!METRICS.includes(value as Metric)) throw new UsageError(`--metric must be one of ${METRICS.join(', ')}, got ${JSON.stringify(value)}`);
  return value as Metric;
}

function formatOption(value: string | undefined, flag: string): Format | undefined {
  if (value === undefined) return undefined;
  if (!(FORMATS as readonly string[]).includes(value)) throw new UsageError(`${flag} must be one of ${FORMATS.join(', ')}, got ${JSON.stringify(value)}`);
  return value as Format;
}

function json(text: string, flag: string, code: ErrorCode): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new VdbError(code, `${flag} is not valid JSON: ${(e as Error).message}`);
  }
}

/** An existing data directory: reading commands must not create one by a typo. */
function existingData(dir: string): void {
  if (!existsSync(join(dir, 'vdb.sqlite'))) {
    throw new VdbError(ErrorCode.COLLECTION_NOT_FOUND, `${dir} holds no vdb data (no ${join(dir, 'vdb.sqlite')})`);
  }
}

function openExisting(dir: string, name: string): Collection {
  existingData(dir);
  try {
    return Collection.open(dir, { name });
  } catch (e) {
    if (e instanceof VdbError && e.code === ErrorCode.COLLECTION_NOT_FOUND) {
      throw new VdbError(ErrorCode.COLLECTION_NOT_FOUND, `no collection ${name} in ${dir}`);
    }
    throw e;
  }
}

const yieldToEventLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

// ------------------------------------------------------------------- import

const IMPORT_HELP = `Usage: vdb import --dir DIR --collection NAME [options] FILE

Imports the vectors of FILE into a collection of the data directory DIR,
creating the collection (with the file's dimension) if it does not exist.
Points are upserted in batches, each durable when it returns; an interrupted
or failed import keeps the batches before it.

Formats, by extension (or --format):
  .fvecs, .bvecs   TEXMEX: per vector an int32 dim, then dim float32 / uint8
  .f32             raw little-endian float32 rows; needs meta.json ({"dim": N})
                   in the same folder (its "metric" is used to create)
  .npy             NumPy 2-D float32 or float64 array, C order, little-endian
  .jsonl           one {"id": ..., "vector": [...], "payload": {...}} per line
                   (id a string or an integer; payload optional)
  IDX              MNIST's format: names like train-images-idx3-ubyte or
                   x.idx, gzipped or not (a .gz is read into memory whole);
                   unsigned byte or float32 values, a row per first-axis entry
Ids are the row numbers (from 0) for all but .jsonl.

Options:
  --dir DIR                data directory (created if missing)
  --collection NAME        collection name (letters, digits, _ and -)
  --metric l2|ip|cosine    metric of a new collection (default: meta.json's, else l2)
  --m N                    HNSW links per node of a new collection (default 16)
  --ef-construction N      HNSW build candidate list (default 200)
  --quantization sq8       8-bit codes in the index of a new collection (docs/collection.md)
  --rescore N              with --quantization: candidates re-ranked (default 4·k, at most ef)
  --batch N                points per transaction, up to 100000 (default 1000)
  --format FORMAT          fvecs, bvecs, f32, npy, jsonl or idx, whatever the extension
  -h, --help               this help

Progress goes to stderr; a summary line to stdout.`;

const IMPORT_OPTIONS = {
  dir: { type: 'string' },
  collection: { type: 'string' },
  metric: { type: 'string' },
  m: { type: 'string' },
  'ef-construction': { type: 'string' },
  quantization: { type: 'string' },
  rescore: { type: 'string' },
  batch: { type: 'string' },
  format: { type: 'string' },
} as const;

/** Opens the collection, creating it with the file's dimension if needed. */
function openForImport(dir: string, name: string, reader: VectorReader, metric: Metric | undefined,
                       hnsw: { m?: number; efConstruction?: number }, quantization?: Quantization): { c: Collection; created: boolean } {
  let c: Collection;
  let created = false;
  try {
    c = Collection.open(dir, { name, metric, hnsw, quantization });
  } catch (e) {
    if (!(e instanceof VdbError && e.code === ErrorCode.COLLECTION_NOT_FOUND)) throw e;
    c = Collection.open(dir, { name, dim: reader.dim, metric: metric ?? reader.metric ?? 'l2', hnsw, quantization });
    created = true;
  }
  if (c.dim !== reader.dim) {
    c.close();
    throw new VdbError(ErrorCode.DIMENSION_MISMATCH, `${reader.path} has dim ${reader.dim}, collection ${name} has dim ${c.dim}`);
  }
  return { c, created };
}

/** The first point of a batch over a limit that the collection's message names no point for. */
async function importCommand(argv: string[]): Promise<void> {
  const { values: o, positionals } = parse(argv, IMPORT_OPTIONS);
  const dir = required(o.dir, '--dir');
  const name = required(o.collection, '--collection');
  if (positionals.length !== 1) throw new UsageError(positionals.length === 0 ? 'give the FILE to import' : `one FILE at a time, got ${positionals.length}`);
  const file = positionals[0];
  const metric = metricOption(o.metric);
  const hnsw = { m: integer(o.m, '--m', 1), efConstruction: integer(o['ef-construction'], '--ef-construction', 1) };
  if (o.rescore !== undefined && o.quantization === undefined) throw new UsageError('--rescore goes with --quantization');
  const quantization = o.quantization === undefined ? undefined
    : { kind: o.quantization as 'sq8', ...(o.rescore === undefined ? {} : { rescore: integer(o.rescore, '--rescore', 1) }) };
  const batchSize = integer(o.batch, '--batch', 1, 1000)!;
  if (batchSize > 100_000) throw new UsageError(`--batch must be at most 100000, got ${batchSize}`);
  const format = formatOption(o.format, '--format');

  const reader = openReader(file, format);
  let done = 0;
  let stop = false;
  const onSignal = () => {
    if (stop) process.exit(130);
    stop = true;
    process.stderr.write('\nstopping after this batch (Ctrl-C again to quit now)\n');
  };
  try {
    // The first batch is read before the collection is created, so that a bad file creates nothing.
    let b = reader.next(batchSize);
    const { c, created } = openForImport(dir, name, reader, metric, hnsw, quantization);
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    const before = c.count();
    const total = reader.count;
    process.stderr.write(`${created ? 'created' : 'importing into'} collection ${name} (dim ${c.dim}, ${c.metric}) in ${dir}: ` +
      `${file} (${reader.format}${total === undefined ? '' : `, ${total} points`})\n`);
    const bar = new RateProgress('import', 'points');
    let holds = before;
    try {
      for (; b; b = stop ? undefined : reader.next(batchSize)) {
        try {
          c.upsert(b.points);
        } catch (e) {
          // Name the row or line of the point the collection refused.
          if (!(e instanceof VdbError)) throw e;
          const m = /^points\[(\d+)\](?:\.|: )?(.*)$/s.exec(e.message);
          if (m) throw new VdbError(e.code, `${file} ${b.where(Number(m[1]))}: ${m[2]}`);
          throw new VdbError(e.code, `${file}, the batch of ${b.where(0)} to ${b.where(b.points.length - 1)}: ${e.message}`);
        }
        done += b.points.length;
        bar.update(done, total, reader.fraction());
        // Lets the collection's background snapshot write its parts between batches.
        await yieldToEventLoop();
      }
      bar.update(done, total ?? done, 1, true);
    } finally {
      holds = c.count();
      c.close();
    }
    const secs = bar.elapsed();
    const after = `${name} now holds ${holds} points`;
    if (stop) {
      process.stderr.write(`interrupted: imported ${done}${total === undefined ? '' : ` of ${total}`} points; ${after}\n`);
      throw new Exit(130);
    }
    console.log(`imported ${done} points from ${file} into ${name} in ${duration(secs)} (${Math.round(done / Math.max(secs, 1e-9))} points/s); ${after}`);
  } catch (e) {
    if (e instanceof VdbError && done > 0) {
      throw new VdbError(e.code, `${e.message} (the ${done} points before it were imported)`);
    }
    throw e;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    reader.close();
  }
}

// ------------------------------------------------------------------- search

const SEARCH_HELP = `Usage: vdb search --dir DIR --collection NAME [options] (--vector JSON | --query-file FILE --row N)

Prints the k nearest points to a query vector. The score is the metric itself:
L2 distance (smaller is nearer), cosine similarity or inner product (larger is nearer).

Options:
  --dir DIR                data directory
  --collection NAME        collection name
  --vector JSON            the query, a JSON array of numbers: '[0.1, 0.2, ...]'
  --query-file FILE        take the query from a file (any format vdb import reads)
  --row N                  ... its row N (from 0; for .jsonl the N-th point)
  --query-format FORMAT    format of --query-file, whatever its extension
  --k N                    hits to return (default 10)
  --ef N                   HNSW candidate list, at least k (default max(k, 64))
  --exact                  exact search by a full scan instead of the HNSW graph
  --filter JSON            payload filter, e.g. '{"color": "red", "size": {"$lt": 3}}'
  --with-payload           include each hit's payload
  --output table|jsonl     a table, or one JSON object per hit
                           (default: table on a terminal, jsonl otherwise)
  -h, --help               this help`;

const SEARCH_OPTIONS = {
  dir: { type: 'string' },
  collection: { type: 'string' },
  vector: { type: 'string' },
  'query-file': { type: 'string' },
  row: { type: 'string' },
  'query-format': { type: 'string' },
  k: { type: 'string' },
  ef: { type: 'string' },
  exact: { type: 'boolean' },
  filter: { type: 'string' },
  'with-payload': { type: 'boolean' },
  output: { type: 'string' },
} as const;

function queryVector(o: { vector?: string; 'query-file'?: string; row?: string; 'query-format'?: string }): number[] | Float32Array {
  if ((o.vector === undefined) === (o['query-file'] === undefined)) {
    throw new UsageError('give the query as --vector JSON or as --query-file FILE --row N');
  }
  if (o.vector !== undefined) {
    if (o.row !== undefined) throw new UsageError('--row goes with --query-file');
    const v = json(o.vector, '--vector', ErrorCode.INVALID_VECTOR);
    if (!Array.isArray(v) || !v.every((x) => typeof x === 'number')) {
      throw new VdbError(ErrorCode.INVALID_VECTOR, '--vector must be a JSON array of numbers');
    }
    return v as number[];
  }
  const row = integer(required(o.row, '--row (with --query-file)'), '--row', 0)!;
  const reader = openReader(o['query-file']!, formatOption(o['query-format'], '--query-format'));
  try {
    return reader.row(row);
  } finally {
    reader.close();
  }
}

function formatScore(x: number): string {
  return Number.isInteger(x) ? String(x) : x.toPrecision(7);
}

function printTable(hits: Hit[], withPayload: boolean): void {
  if (hits.length === 0) {
    console.log('(no hits)');
    return;
  }
  const rows = hits.map((h, i) => [String(i + 1), typeof h.id === 'string' ? h.id : String(h.id), formatScore(h.score),
    ...(withPayload ? [h.payload === undefined ? '' : JSON.stringify(h.payload)] : [])]);
  const head = ['#', 'id', 'score', ...(withPayload ? ['payload'] : [])];
  const width = head.map((t, j) => Math.max(t.length, ...rows.map((r) => r[j].length)));
  const line = (r: string[]) => r.map((t, j) => (j === r.length - 1 ? t : j === 0 ? t.padStart(width[j]) : t.padEnd(width[j]))).join('  ');
  console.log(line(head));
  for (const r of rows) console.log(line(r));
}

async function searchCommand(argv: string[]): Promise<void> {
  const { values: o, positionals } = parse(argv, SEARCH_OPTIONS);
  if (positionals.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(positionals[0])}`);
  const dir = required(o.dir, '--dir');
  const name = required(o.collection, '--collection');
  const k = integer(o.k, '--k', 1, 10)!;
  const ef = integer(o.ef, '--ef', 1);
  const output = o.output ?? (process.stdout.isTTY ? 'table' : 'jsonl');
  if (output !== 'table' && output !== 'jsonl') throw new UsageError(`--output must be table or jsonl, got ${JSON.stringify(output)}`);
  const vector = queryVector(o);
  const filter = o.filter === undefined ? undefined : (json(o.filter, '--filter', ErrorCode.INVALID_FILTER) as Filter);
  const withPayload = o['with-payload'] ?? false;

  const c = openExisting(dir, name);
  let hits: Hit[];
  try {
    hits = c.search(vector, { k, ef, filter, exact: o.exact ?? false, withPayload });
  } finally {
    c.close();
  }
  if (output === 'table') printTable(hits, withPayload);
  else for (const h of hits) process.stdout.write(JSON.stringify(h) + '\n');
}

// --------------------------------------------------------------------- main

// With --nats, import and search go to a cluster instead of a data directory.
const viaCluster = (argv: string[]) => argv.some((a) => a === '--nats' || a.startsWith('--nats='));

const COMMANDS: Record<string, Command> = {
  import: {
    summary: 'import vectors from a file into a collection (fvecs, bvecs, f32, npy, jsonl, idx)',
    help: IMPORT_HELP,
    run: (argv) => (viaCluster(argv) ? clusterImport(argv) : importCommand(argv)),
  },
  search: {
    summary: 'k nearest neighbours of a vector, with an optional payload filter',
    help: SEARCH_HELP,
    run: (argv) => (viaCluster(argv) ? clusterSearch(argv) : searchCommand(argv)),
  },
  ...CLUSTER_COMMANDS,
  ...USER_COMMANDS,
  ...BACKUP_COMMANDS,
  ...CONSOLE_COMMANDS,
};

function version(): string {
  for (const rel of ['../package.json', '../../package.json']) {
    const p = fileURLToPath(new URL(rel, import.meta.url));
    if (existsSync(p)) {
      const pkg = JSON.parse(readFileSync(p, 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'vdb') return pkg.version ?? '?';
    }
  }
  return '?';
}

function mainHelp(): string {
  const names = Object.keys(COMMANDS);
  const w = Math.max(...names.map((n) => n.length));
  return `vdb ${version()}: a vector database with a WebAssembly HNSW core

Usage: vdb <command> [options]

Commands (embedded: they work on a data directory in this process):
${names.map((n) => `  ${n.padEnd(w)}   ${COMMANDS[n].summary}`).join('\n')}

Run \`vdb <command> --help\` (or \`vdb help <command>\`) for its options.
Exit status: 0 done, 1 error (one line: "vdb <command>: CODE: message"),
2 usage error, 130 interrupted. VDB_DEBUG=1 prints stack traces.`;
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined) {
    process.stderr.write(mainHelp() + '\n');
    return 2;
  }
  if (name === '--help' || name === '-h') {
    console.log(mainHelp());
    return 0;
  }
  if (name === '--version' || name === '-v') {
    console.log(version());
    return 0;
  }
  if (name === 'help') {
    const cmd = rest[0] === undefined ? undefined : COMMANDS[rest[0]];
    if (rest[0] !== undefined && !cmd) {
      process.stderr.write(`vdb: no command ${JSON.stringify(rest[0])}; run vdb --help\n`);
      return 2;
    }
    console.log(cmd ? cmd.help : mainHelp());
    return 0;
  }
  const cmd = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
  if (!cmd) {
    process.stderr.write(`vdb: no command ${JSON.stringify(name)}; run vdb --help\n`);
    return 2;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    console.log(cmd.help);
    return 0;
  }
  try {
    await cmd.run(rest);
    return 0;
  } catch (e) {
    if (e instanceof Exit) return e.status;
    // Clears a progress line left half-drawn on a terminal.
    if (process.stderr.isTTY) process.stderr.write('\r\x1b[K');
    if (e instanceof UsageError) {
      process.stderr.write(`vdb ${name}: ${e.message} (see vdb ${name} --help)\n`);
      return 2;
    }
    if (process.env.VDB_DEBUG) process.stderr.write(`${(e as Error).stack}\n`);
    const code = e instanceof VdbError ? e.code : ErrorCode.INTERNAL;
    const msg = (e instanceof Error ? e.message : String(e)).replace(/\s*\n\s*/g, ' ');
    process.stderr.write(`vdb ${name}: ${code}: ${msg}\n`);
    return 1;
  }
}

process.stdout.on('error', (e: NodeJS.ErrnoException) => {
  if (e.code === 'EPIPE') process.exit(0); // `vdb search ... | head`
  throw e;
});

// Exit explicitly: a NATS connection left by a failed command would keep the process alive.
process.exit(await main(process.argv.slice(2)));
