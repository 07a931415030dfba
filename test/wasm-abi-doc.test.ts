// docs/wasm-abi.md is what a host in another runtime is written from, so the
// facts it states are checked against the build: its complete example is a file
// this test runs (the page must show that file and its output exactly), every
// export is documented and every documented export exists, and the status codes,
// limits, initial memory and scratch address it gives are the module's.

import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const doc = readFileSync(join(ROOT, 'docs', 'wasm-abi.md'), 'utf8');
const layout = readFileSync(join(ROOT, 'assembly', 'layout.ts'), 'utf8');
const EXAMPLE = join('docs', 'examples', 'wasm-abi.mjs');
const wasm = new WebAssembly.Module(readFileSync(join(ROOT, 'build', 'vdb.wasm')));

/** The text of `## title` up to the next `## ` heading. */
function section(title: string): string {
  const start = doc.indexOf(`\n## ${title}\n`);
  expect(start, `docs/wasm-abi.md has a section "${title}"`).toBeGreaterThanOrEqual(0);
  const end = doc.indexOf('\n## ', start + 1);
  return doc.slice(start, end < 0 ? undefined : end);
}

/** The fenced code blocks of a piece of markdown, in order. */
function codeBlocks(md: string): string[] {
  return [...md.matchAll(/^```[a-z]*\n([\s\S]*?)^```$/gm)].map((m) => m[1]);
}

/** `export const NAME: type = value` of assembly/layout.ts. */
function constant(name: string): number {
  const m = layout.match(new RegExp(`export const ${name}: \\w+ = (-?\\d+);`));
  expect(m, `assembly/layout.ts exports ${name}`).not.toBeNull();
  return Number(m![1]);
}

const minus = (n: number) => (n < 0 ? `−${-n}` : String(n)); // the doc writes U+2212

describe('docs/wasm-abi.md', () => {
  it('shows its complete example as the file it is, and exactly what it prints', async () => {
    const [code, output] = codeBlocks(section('Complete example'));
    expect(code).toBe(readFileSync(join(ROOT, EXAMPLE), 'utf8'));
    const printed = await new Promise<string>((resolve, reject) => {
      execFile(process.execPath, [EXAMPLE], { cwd: ROOT }, (err, stdout, stderr) =>
        err ? reject(new Error(`${EXAMPLE} failed: ${err.message}\n${stderr}`)) : resolve(stdout));
    });
    expect(output).toBe(printed);
  });

  it('documents every export, and only exports that exist', () => {
    const functions = WebAssembly.Module.exports(wasm).filter((e) => e.kind === 'function').map((e) => e.name);
    const reference = section('Reference');
    const documented = new Set([...reference.matchAll(/`((?:index|kernel|scratch)_\w+)\(/g)].map((m) => m[1]));
    expect([...documented].sort()).toEqual([...functions].sort());
    expect(doc).toContain(`**Exports.** ${functions.length} functions (below) and \`memory\`.`);
    expect(WebAssembly.Module.imports(wasm)).toEqual([]); // "The release build imports nothing"
  });

  it('lists exactly the status codes of assembly/layout.ts', () => {
    const table = [...section('Status codes').matchAll(/^\| (−?\d+) \| `(\w+)` \|/gm)].map((m) => [m[2], m[1]]);
    const codes = [...layout.matchAll(/export const ((?:OK|ERR_\w+)): i32 = (-?\d+);/g)].map((m) => [m[1], minus(Number(m[2]))]);
    expect(codes.length).toBeGreaterThan(1);
    expect(table).toEqual(codes);
  });

  it('gives the limits the core enforces', () => {
    const reference = section('Reference');
    expect(reference).toContain(`\`dim\` 1 … ${constant('DIM_MAX')} `);
    expect(reference).toContain(`\`m\` 2 … ${constant('M_MAX')} `);
    expect(reference).toContain(`\`k\` 1 … ${constant('K_MAX')};`);
    expect(doc).toContain(`result slots | \`index_result_ids_ptr()\` | ${constant('K_MAX')} u32`);
    expect(doc).toContain(`| scratch | \`scratch_ptr()\` | ${constant('KERNEL_FLOATS')} f32 (64 KiB)`);
  });

  it('gives the initial memory and the scratch address of this build', () => {
    const w = new WebAssembly.Instance(wasm, { env: { abort: () => { throw new Error('abort'); } } }).exports as {
      memory: WebAssembly.Memory; scratch_ptr: () => number;
    };
    const pages = w.memory.buffer.byteLength / 65536;
    const words = ['zero', 'one', 'two', 'three', 'four'];
    expect(doc).toContain(`Linear memory starts at ${words[pages]} 64 KiB page`);
    const scratch = w.scratch_ptr() >>> 0;
    expect(doc).toContain(`(at ${scratch} in this build;`);
    // "all of it lies in the [initial] pages": the host may use it before index_init.
    expect(scratch % 64).toBe(0);
    expect(scratch + constant('KERNEL_FLOATS') * 4).toBeLessThanOrEqual(w.memory.buffer.byteLength);
  });

  it('links only to sections it has', () => {
    const anchors = new Set([...doc.matchAll(/^#+ (.+)$/gm)].map((m) =>
      m[1].toLowerCase().replace(/[^\p{L}\p{N} _-]/gu, '').replace(/ /g, '-')));
    const links = [...doc.matchAll(/\]\(#([^)]+)\)/g)].map((m) => m[1]);
    expect(links.length).toBeGreaterThan(0);
    for (const l of links) expect(anchors.has(l), `#${l} is a heading of docs/wasm-abi.md`).toBe(true);
  });
});
