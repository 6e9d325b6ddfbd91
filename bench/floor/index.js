// The floor: the least a Worker and a SQLite-backed Durable Object can do to
// serve benchmark workloads 1-3 on this runtime. Benchmark code only (target
// "floor", README "Benchmark"): its CPU per message is what the Rust worker is
// compared against.
//
// It speaks the wire format of the routes those workloads use, as academy-py
// 1.0's HttpExchangeTransport calls them: POST /mailbox (create), PUT /message
// (send), GET /mailbox/listen (SSE) and GET /message (long poll), fields in the
// JSON body (wire.js, shared with bench/floor_design/). A send is one RPC to
// the destination's object and one insert, acknowledged once durable (the
// runtime's output gate holds the answer until the write is); a delivery
// deletes the row. The object holds the listen stream itself (it cannot
// hibernate meanwhile: the cheapest design in CPU, not in duration).
//
// Left out on purpose: authentication and permissions, terminate, status,
// discovery, heartbeats, stats, request bookkeeping at the sender, size
// limits, expiry, query parameters, keep-alives, Last-Event-Id replay. One
// stream per mailbox (a new one replaces it); an event written to a stream
// whose client has gone is lost.
import { DurableObject } from 'cloudflare:workers';
import {
  UNKNOWN, TIMED_OUT, answer, createMailbox, entityUid, mailbox, mailboxExists, sentMessage, serve,
  ssePreamble, sseEvents, sseResponse, timeoutMs,
} from './wire.js';

export default serve({
  'POST /mailbox': createMailbox,
  'PUT /message': async (body, env) => {
    const { text, header } = sentMessage(body);
    const dest = entityUid(header?.dest, 'message');
    return answer(await mailbox(env, dest).send(text), () => new Response(null));
  },
  'GET /message': async (body, env) => {
    const stub = mailbox(env, entityUid(body.mailbox, 'mailbox'));
    return answer(await stub.receive(timeoutMs(body.timeout)), (text) => Response.json({ message: text }));
  },
  'GET /mailbox/listen': async (body, env) => {
    const stub = mailbox(env, entityUid(body.mailbox, 'mailbox'));
    return answer(await stub.listen(timeoutMs(body.timeout)), sseResponse);
  },
});

/** One mailbox: its queue in SQLite, its listen stream and waiting long polls. */
export class Mailbox extends DurableObject {
  constructor(ctx, env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    this.exists = mailboxExists(this.sql);
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

  receive(timeoutMs) {
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
      }, timeoutMs);
      this.polls.push(poll);
    });
  }

  /** A new stream: the queue first, in order, then each message as it is sent. */
  listen(timeoutMs) {
    if (!this.exists) {
      return UNKNOWN;
    }
    this.stream?.end();
    const stream = new Stream(timeoutMs, () => {
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
    this.controller.enqueue(ssePreamble());
    this.timer = setTimeout(() => this.expire(), idleMs);
  }

  /** Writes one event; false if the stream has ended. */
  push(seq, text) {
    try {
      this.controller.enqueue(sseEvents([[seq, text]]));
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
