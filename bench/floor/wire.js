// What both floors share (bench/floor/index.js and bench/floor_design/index.js):
// the wire format of the routes benchmark workloads 1-3 use, as academy-py 1.0's
// HttpExchangeTransport calls them, fields in the JSON body, the SSE framing of a
// listen stream, and how an object knows its mailbox exists. Benchmark code only.

// Longest a listen stream stays idle or a long poll waits (upstream's default).
const MAX_WAIT_S = 60;
// What the client waits before it reconnects after a stream ends (as the worker).
const RETRY_MS = 100;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
// The objects' answers besides a value; each maps to academy's status code.
export const UNKNOWN = 404;
export const TIMED_OUT = 408;
const ERROR_TEXT = { [UNKNOWN]: 'Unknown mailbox ID', [TIMED_OUT]: 'Request timeout' };
const encoder = new TextEncoder();

class BadRequest extends Error {}

/**
 * The Worker's fetch handler for ``routes``: ``"METHOD /path"`` -> ``(body, env)
 * => Response``, ``body`` being the request's JSON. Other routes are 404, bad
 * input 400.
 */
export function serve(routes) {
  return {
    async fetch(request, env) {
      const route = routes[`${request.method} ${new URL(request.url).pathname}`];
      if (!route) {
        return new Response('Unknown route', { status: 404 });
      }
      try {
        let body;
        try {
          body = await request.json();
        } catch {
          throw new BadRequest('Missing or invalid field: body');
        }
        return await route(body, env);
      } catch (error) {
        if (error instanceof BadRequest) {
          return new Response(error.message, { status: 400 });
        }
        throw error;
      }
    },
  };
}

/** The mailbox object of ``uid``. */
export function mailbox(env, uid) {
  return env.MAILBOX.get(env.MAILBOX.idFromName(uid));
}

/** ``POST /mailbox``. */
export async function createMailbox(body, env) {
  await mailbox(env, entityUid(body.mailbox, 'mailbox')).create();
  return new Response(null);
}

/**
 * Whether an object's mailbox exists: once its ``messages`` table does, so
 * nothing is stored for other ids.
 */
export function mailboxExists(sql) {
  return sql
    .exec("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'messages'")
    .toArray().length > 0;
}

/** An object's result: a status number for an error, else ``ok(result)``. */
export function answer(result, ok) {
  return typeof result === 'number'
    ? new Response(ERROR_TEXT[result], { status: result })
    : ok(result);
}

/** ``PUT /message``'s message: its text as stored and its parsed header. */
export function sentMessage(body) {
  const text = typeof body.message === 'string' ? body.message : JSON.stringify(body.message);
  return { text, header: parseField(text, 'message')?.header };
}

function parseField(text, field) {
  try {
    return JSON.parse(text);
  } catch {
    throw new BadRequest(`Missing or invalid field: ${field}`);
  }
}

/** The uid of an entity id sent as JSON text (as academy does) or as an object. */
export function entityUid(value, field) {
  const id = typeof value === 'string' ? parseField(value, field) : value;
  if (typeof id?.uid !== 'string' || !UUID.test(id.uid)) {
    throw new BadRequest(`Missing or invalid field: ${field}`);
  }
  return id.uid.toLowerCase();
}

/** A wait's ``timeout`` field, in milliseconds. */
export function timeoutMs(value) {
  if (value === undefined || value === null) {
    return MAX_WAIT_S * 1000;
  }
  if (typeof value !== 'number' || !(value > 0 && value <= MAX_WAIT_S)) {
    throw new BadRequest(`Invalid timeout (${value})`);
  }
  return value * 1000;
}

/** The first bytes of every listen stream. */
export function ssePreamble() {
  return encoder.encode(`retry: ${RETRY_MS}\n: connected\n\n`);
}

/** Messages as SSE events (``[seq, text]`` pairs), in one chunk. */
export function sseEvents(messages) {
  let chunk = '';
  for (const [seq, text] of messages) {
    chunk += `id: ${seq}\ndata: ${text.replace(/\r?\n/g, '\ndata: ')}\n\n`;
  }
  return encoder.encode(chunk);
}

export function sseResponse(body) {
  return new Response(body, {
    headers: { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' },
  });
}
