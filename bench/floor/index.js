// The floor: the least a Worker and a SQLite-backed Durable Object can do to
// serve benchmark workloads 1-3 on this runtime. Benchmark code only (target
// "floor", README "Benchmark"): its CPU per message is what the Rust worker is
// compared against.
//
// It speaks the wire format of the routes those workloads use, as academy-py
// 1.0's HttpExchangeTransport calls them: POST /mailbox (create), PUT /message
// (send), GET /mailbox/listen (SSE) and GET /message (long poll), fields in the
// JSON body. A send is one RPC to the destination's object and one insert,
// acknowledged once durable (the runtime's output gate holds the answer until
// the write is); a delivery deletes the row. The object holds the listen
// stream itself (it cannot hibernate meanwhile: the cheapest design in CPU,
// not in duration).
//
// Left out on purpose: authentication and permissions, terminate, status,
// discovery, heartbeats, stats, request bookkeeping at the sender, size
// limits, expiry, query parameters, keep-alives, Last-Event-Id replay. One
// stream per mailbox (a new one replaces it); an event written to a stream
// whose client has gone is lost.
import { DurableObject } from 'cloudflare:workers';

// Longest a listen stream stays idle or a long poll waits (upstream's default).
const MAX_WAIT_S = 60;
// What the client waits before it reconnects after a stream ends (as the worker).
const RETRY_MS = 100;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
// The objects' answers besides a value; each maps to academy's status code.
const UNKNOWN = 404;
const TIMED_OUT = 408;
const ERROR_TEXT = { [UNKNOWN]: 'Unknown mailbox ID', [TIMED_OUT]: 'Request timeout' };
const encoder = new TextEncoder();

class BadRequest extends Error {}

export default {
  async fetch(request, env) {
    try {
      return await handle(request, env);
    } catch (error) {
      if (error instanceof BadRequest) {
        return new Response(error.message, { status: 400 });
      }
      throw error;
    }
  },
};

async function handle(request, env) {
  const route = `${request.method} ${new URL(request.url).pathname}`;
  if (!ROUTES.has(route)) {
    return new Response('Unknown route', { status: 404 });
  }
  let body;
  try {
    body = await request.json();
  } catch {
    throw new BadRequest('Missing or invalid field: body');
  }
  switch (route) {
    case 'POST /mailbox':
      await mailbox(env, entityUid(body.mailbox, 'mailbox')).create();
      return new Response(null);
    case 'PUT /message': {
      const text = typeof body.message === 'string' ? body.message : JSON.stringify(body.message);
      const dest = entityUid(parseField(text, 'message')?.header?.dest, 'message');
      return answer(await mailbox(env, dest).send(text), () => new Response(null));
    }
    case 'GET /message': {
      const stub = mailbox(env, entityUid(body.mailbox, 'mailbox'));
      return answer(await stub.receive(timeoutS(body.timeout)), (text) => Response.json({ message: text }));
    }
    case 'GET /mailbox/listen': {
      const stub = mailbox(env, entityUid(body.mailbox, 'mailbox'));
      return answer(await stub.listen(timeoutS(body.timeout)), (stream) => new Response(stream, {
        headers: { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' },
      }));
    }
  }
}

const ROUTES = new Set(['POST /mailbox', 'PUT /message', 'GET /message', 'GET /mailbox/listen']);

function mailbox(env, uid) {
  return env.MAILBOX.get(env.MAILBOX.idFromName(uid));
}

/** An object's result: a status number for an error, else ``ok(result)``. */
function answer(result, ok) {
  return typeof result === 'number'
    ? new Response(ERROR_TEXT[result], { status: result })
    : ok(result);
}

function parseField(text, field) {
  try {
    return JSON.parse(text);
  } catch {
    throw new BadRequest(`Missing or invalid field: ${field}`);
  }
}

/** The uid of an entity id sent as JSON text (as academy does) or as an object. */
function entityUid(value, field) {
  const id = typeof value === 'string' ? parseField(value, field) : value;
  if (typeof id?.uid !== 'string' || !UUID.test(id.uid)) {
    throw new BadRequest(`Missing or invalid field: ${field}`);
  }
  return id.uid.toLowerCase();
}

function timeoutS(value) {
  if (value === undefined || value === null) {
    return MAX_WAIT_S;
  }
  if (typeof value !== 'number' || !(value > 0 && value <= MAX_WAIT_S)) {
    throw new BadRequest(`Invalid timeout (${value})`);
  }
  return value;
}

/** One mailbox: its queue in SQLite, its listen stream and waiting long polls. */
export class Mailbox extends DurableObject {
  constructor(ctx, env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    // A mailbox exists once its table does: nothing is stored for other ids.
    this.exists = this.sql
      .exec("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'messages'")
      .toArray().length > 0;
    this.stream = null;
    this.polls = []; // oldest first: each takes a message text
  }

  create() {
    if (!this.exists) {
      this.sql.exec('CREATE TABLE messages (seq INTEGER PRIMARY KEY, text TEXT NOT NULL)');
      this.exists = true;
    }
  }

  send(text) {
    if (!this.exists) {
      return UNKNOWN;
    }
    const { seq } = this.sql.exec('INSERT INTO messages (text) VALUES (?) RETURNING seq', text).one();
    const poll = this.polls.shift();
    if (poll) {
      poll(text);
      this.delivered(seq);
    } else if (this.stream?.push(seq, text)) {
      this.delivered(seq);
    }
    return null;
  }

  receive(timeoutS) {
    if (!this.exists) {
      return UNKNOWN;
    }
    const [first] = this.sql.exec('SELECT seq, text FROM messages ORDER BY seq LIMIT 1').toArray();
    if (first) {
      this.delivered(first.seq);
      return first.text;
    }
    return new Promise((resolve) => {
      const poll = (text) => {
        clearTimeout(timer);
        resolve(text);
      };
      const timer = setTimeout(() => {
        this.polls.splice(this.polls.indexOf(poll), 1);
        resolve(TIMED_OUT);
      }, timeoutS * 1000);
      this.polls.push(poll);
    });
  }

  /** A new stream: the queue first, in order, then each message as it is sent. */
  listen(timeoutS) {
    if (!this.exists) {
      return UNKNOWN;
    }
    this.stream?.end();
    const stream = new Stream(timeoutS * 1000, () => {
      if (this.stream === stream) {
        this.stream = null;
      }
    });
    this.stream = stream;
    const queued = this.sql.exec('SELECT seq, text FROM messages ORDER BY seq').toArray();
    for (const { seq, text } of queued) {
      stream.push(seq, text);
    }
    if (queued.length) {
      this.sql.exec('DELETE FROM messages WHERE seq <= ?', queued.at(-1).seq);
    }
    return stream.body;
  }

  delivered(seq) {
    this.sql.exec('DELETE FROM messages WHERE seq = ?', seq);
  }
}

/** An SSE body the object writes to; it ends after ``idleMs`` without a message. */
class Stream {
  constructor(idleMs, onEnd) {
    this.idleMs = idleMs;
    this.onEnd = onEnd;
    this.lastPush = Date.now();
    this.body = new ReadableStream({
      start: (controller) => {
        this.controller = controller;
      },
      cancel: () => this.end(), // the client went away
    });
    this.controller.enqueue(encoder.encode(`retry: ${RETRY_MS}\n: connected\n\n`));
    this.timer = setTimeout(() => this.expire(), idleMs);
  }

  /** Writes one event; false if the stream has ended. */
  push(seq, text) {
    try {
      this.controller.enqueue(encoder.encode(`id: ${seq}\ndata: ${text.replace(/\r?\n/g, '\ndata: ')}\n\n`));
    } catch {
      this.end();
      return false;
    }
    this.lastPush = Date.now();
    return true;
  }

  expire() {
    const idle = Date.now() - this.lastPush;
    if (idle >= this.idleMs) {
      this.end();
    } else {
      this.timer = setTimeout(() => this.expire(), this.idleMs - idle);
    }
  }

  end() {
    clearTimeout(this.timer);
    try {
      this.controller.close();
    } catch {
      // already closed or cancelled
    }
    this.onEnd();
  }
}
