// Serves the built Worker straight from workerd through Miniflare's API: no
// `wrangler dev` proxy in front, so the figures are the Worker's own.
// Usage: node bench/serve_workerd.mjs <port> [KEY=VALUE ...]   (extra [vars])
import { Miniflare } from "miniflare";

const [port, ...pairs] = process.argv.slice(2);
const bindings = {};
for (const pair of pairs) {
  const at = pair.indexOf("=");
  bindings[pair.slice(0, at)] = pair.slice(at + 1);
}
const mf = new Miniflare({
  host: "127.0.0.1",
  port: Number(port),
  modules: true,
  scriptPath: "build/index.js",
  modulesRules: [{ type: "CompiledWasm", include: ["**/*.wasm"] }],
  compatibilityDate: "2026-04-01",
  durableObjects: {
    MAILBOX: { className: "Mailbox", useSQLite: true },
    DIRECTORY: { className: "Directory", useSQLite: true },
  },
  bindings,
});
await mf.ready;
console.log(`ready on http://127.0.0.1:${port}`);
const stop = async () => { await mf.dispose(); process.exit(0); };
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
