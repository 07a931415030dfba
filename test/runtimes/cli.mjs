// `deno run --allow-read test/runtimes/cli.mjs build/vdb.wasm` or
// `bun run test/runtimes/cli.mjs build/vdb.wasm`: prints the probe's JSON summary.
// Each runtime reads the file with its own API.

import { probe } from './abi-probe.mjs';

const path = globalThis.Deno ? Deno.args[0] : process.argv[2];
const bytes = globalThis.Deno ? await Deno.readFile(path) : new Uint8Array(await Bun.file(path).arrayBuffer());
console.log(JSON.stringify(await probe(bytes)));
