// The Worker's entry module: the Durable Object classes as the runtime needs them
// for RPC, around the wasm ones. scripts/build.sh copies it to build/entry.mjs,
// beside worker-build's bundle (index.js), and wrangler.toml's `main` points there.
//
// workerd accepts RPC calls only on classes that extend `DurableObject`;
// worker-build exports each wasm class wrapped in a `Proxy` (which re-creates the
// wasm instance after a panic), and that is refused. These classes extend
// `DurableObject`, hold one wasm object each (built through that `Proxy`, so the
// recovery stays) and forward every handler to it, plus `rpc`, the one method
// the Worker and other objects call (src/edge/mod.rs `call_object`). Nothing else
// of the wasm object is reachable (its `free()` must not be). Every rule is in
// Rust: keep this file to forwarding.
import { DurableObject } from 'cloudflare:workers';
import * as wasm from './index.js';

export { default } from './index.js';

export class Mailbox extends DurableObject {
  #object;

  constructor(ctx, env) {
    super(ctx, env);
    this.#object = new wasm.Mailbox(ctx, env);
  }

  // Listen streams and long polls: a WebSocket upgrade.
  fetch(request) {
    return this.#object.fetch(request);
  }

  alarm(info) {
    return this.#object.alarm(info);
  }

  webSocketMessage(ws, message) {
    return this.#object.webSocketMessage(ws, message);
  }

  webSocketClose(ws, code, reason, wasClean) {
    return this.#object.webSocketClose(ws, code, reason, wasClean);
  }

  webSocketError(ws, error) {
    return this.#object.webSocketError(ws, error);
  }

  // Every other call: `kind` names it, `call` is its JSON, `text` a message.
  rpc(kind, call, text) {
    return this.#object.rpc(kind, call, text);
  }
}

export class Directory extends DurableObject {
  #object;

  constructor(ctx, env) {
    super(ctx, env);
    this.#object = new wasm.Directory(ctx, env);
  }

  rpc(kind, call) {
    return this.#object.rpc(kind, call);
  }
}
