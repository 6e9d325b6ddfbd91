// Serves the built Worker (build/entry.mjs, or index.js for builds before it)
// from workerd through Miniflare's API, with no `wrangler dev` proxy in front: the benchmark's
// "workerd" target, and the black-box tests that must see what workerd itself
// answers (harness.WorkerdDirectProcess). Also the benchmark's "floor" and
// "floor-design" targets (bench/floor/, bench/floor_design/), with their own
// --script, --objects and --modules-root (bench/: they share bench/floor/wire.js).
// Durable Objects are
// SQLite-backed and persisted under --persist (as `wrangler dev --persist-to` does).
//
//   node bench/serve_workerd.mjs --port 8787 --persist DIR [--script build/entry.mjs]
//                                [--vars JSON] [--compatibility-date YYYY-MM-DD]
//                                [--objects JSON]   (binding -> class; default: the worker's)
//                                [--inspector-port N]
//                                [--modules-root DIR]   (default: the script's directory;
//                                   the script's imports must stay below it)
//
// --inspector-port opens workerd's DevTools inspector on that port (the Chrome
// DevTools Protocol: targets listed at /json; bench/profile.py --cpu-profile).
// Binds 127.0.0.1 only, prints "ready <url>" once serving, and shuts
// workerd down on SIGTERM/SIGINT.
import { Miniflare } from 'miniflare';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { values } = parseArgs({
  options: {
    port: { type: 'string' },
    script: { type: 'string', default: path.join(repo, 'build', 'entry.mjs') },
    persist: { type: 'string' },
    vars: { type: 'string', default: '{}' },
    'compatibility-date': { type: 'string', default: '2026-04-01' },
    objects: { type: 'string', default: JSON.stringify({ MAILBOX: 'Mailbox', DIRECTORY: 'Directory' }) },
    'inspector-port': { type: 'string' },
    'modules-root': { type: 'string' },
  },
});
if (!values.port || !values.persist) {
  console.error('usage: serve_workerd.mjs --port N --persist DIR [--script FILE] [--vars JSON] [--objects JSON]');
  process.exit(2);
}

const mf = new Miniflare({
  host: '127.0.0.1',
  port: Number(values.port),
  modules: true,
  scriptPath: path.resolve(values.script),
  modulesRoot: path.resolve(values['modules-root'] ?? path.dirname(values.script)),
  // worker-build's bundle (index.js, imported by entry.mjs) is an ES module.
  modulesRules: [
    { type: 'CompiledWasm', include: ['**/*.wasm'] },
    { type: 'ESModule', include: ['**/*.js'] },
  ],
  compatibilityDate: values['compatibility-date'],
  bindings: JSON.parse(values.vars),
  durableObjects: Object.fromEntries(
    Object.entries(JSON.parse(values.objects)).map(([binding, className]) => [
      binding,
      { className, useSQLite: true },
    ]),
  ),
  durableObjectsPersist: values.persist,
  inspectorPort: values['inspector-port'] === undefined ? undefined : Number(values['inspector-port']),
});

const url = await mf.ready;
console.log(`ready ${url}`);

let stopping = false;
async function stop() {
  if (stopping) return;
  stopping = true;
  try {
    await mf.dispose();
  } finally {
    process.exit(0);
  }
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
