// floor-design: the floor (bench/floor/) with the Rust worker's design, so the
// worker's CPU per message can be split into what the design costs on this
// runtime and what its code adds. Benchmark code only (target "floor-design",
// README "Benchmark"). The Worker side's wire format is the floor's (wire.js).
//
// What it adds to the floor, as the worker does it:
// - Sender bookkeeping. PUT /message is one RPC to the destination's object
//   (one insert, answered once durable), then one RPC to the sender's object,
//   which counts a request as outgoing and a response as completed, in memory,
//   and writes its counts row at most once a second: the first change after a
//   quiet second at once, later ones by a timer at the last write + 1 s. A
//   message to its own mailbox does both in the one call.
// - Hibernation. The Worker holds the listen stream and the long poll and opens
//   a WebSocket to the mailbox object (stub.fetch with Upgrade: websocket),
//   which accepts it with the hibernation API (ctx.acceptWebSocket, a tag per
//   socket) and keeps each socket's state in its attachment, so the object could
//   sleep while the socket stays open.
// - Delivery confirmation. The object pushes each message as `m<seq>\n<text>`
//   (at most 16 unconfirmed per stream, 1 per long poll) and keeps it queued,
//   leased to that socket. The Worker writes what it received as SSE events in
//   one chunk, and once the runtime has taken the chunk owes the object a
//   confirmation `c<seq>` (cumulative), sent after 8 such messages or 250 ms,
//   and before the socket closes. Only then the object deletes the rows (the
//   worker marks them delivered, for replay). A closed socket releases what it
//   held, for the next one: a broken stream loses nothing.
// - GET /message: the object answers a queued message at once in the upgrade's
//   plain response (deleting its row); otherwise a socket as above gets one.
//
// Left out, as in the floor: authentication and permissions, terminate,
// status, discovery, heartbeats, the stats route, size limits, expiry, query
// parameters, keep-alives, Last-Event-Id replay (confirmed rows are deleted,
// not kept). One stream per mailbox (a new one closes the old).
import { DurableObject } from 'cloudflare:workers';
import {
  UNKNOWN, TIMED_OUT, answer, createMailbox, entityUid, mailbox, mailboxExists, sentMessage, serve,
  ssePreamble, sseEvents, sseResponse, timeoutMs,
} from '../floor/wire.js';

// The worker's numbers (src/core/listen.rs): messages in flight per stream,
// and when the Worker confirms what the runtime took.
const STREAM_WINDOW = 16;
const CONFIRM_BATCH = 8;
const CONFIRM_DELAY_MS = 250;
// The sender's counts row is written at most this often.
const COUNTS_WRITE_GAP_MS = 1000;
// Close code for a stream's socket that a newer stream took over.
const SUPERSEDED = 4000;

export default serve({
  'POST /mailbox': createMailbox,
  'PUT /message': async (body, env) => {
    const { text, header } = sentMessage(body);
    const dest = entityUid(header?.dest, 'message');
    const src = entityUid(header?.src, 'message');
    const toItself = src === dest;
    const delivered = await mailbox(env, dest).deliver(text, header.kind, toItself);
    if (delivered === null && !toItself) {
      await mailbox(env, src).noteSent(header.kind);
    }
    return answer(delivered, () => new Response(null));
  },
  'GET /message': async (body, env) => {
    const stub = mailbox(env, entityUid(body.mailbox, 'mailbox'));
    const deadline = Date.now() + timeoutMs(body.timeout);
    const opened = await subscribe(stub, 'poll');
    if (!(opened instanceof ObjectSocket)) {
      return answer(opened, (text) => Response.json({ message: text }));
    }
    await opened.arrival(deadline);
    const [first] = opened.closed ? [] : opened.take();
    if (first) {
      opened.send(`c${first[0]}`); // the answer is built: the object may drop it
    }
    opened.close();
    return first ? Response.json({ message: first[1] }) : answer(TIMED_OUT);
  },
  'GET /mailbox/listen': async (body, env) => {
    const stub = mailbox(env, entityUid(body.mailbox, 'mailbox'));
    const idleMs = timeoutMs(body.timeout);
    const opened = await subscribe(stub, 'stream');
    return answer(opened, (socket) => sseResponse(new Relay(socket, idleMs).body));
  },
});

/**
 * Asks the mailbox object for a socket (``wait``: ``poll`` or ``stream``): an
 * ObjectSocket, a status number for an error, or a long poll's queued message.
 */
async function subscribe(stub, wait) {
  const response = await stub.fetch(`https://object/subscribe?wait=${wait}`, {
    headers: { upgrade: 'websocket' },
  });
  if (response.webSocket) {
    return new ObjectSocket(response.webSocket);
  }
  return response.ok ? response.text() : response.status;
}

/** The Worker's end of a socket to a mailbox object. */
class ObjectSocket {
  constructor(ws) {
    this.ws = ws;
    this.frames = []; // `m<seq>\n<text>` frames not yet taken
    this.closed = false;
    this.wake = null;
    ws.addEventListener('message', (event) => {
      this.frames.push(event.data);
      this.notify();
    });
    const closed = () => {
      this.closed = true;
      this.notify();
    };
    ws.addEventListener('close', closed);
    ws.addEventListener('error', closed);
    ws.accept();
  }

  notify() {
    const wake = this.wake;
    this.wake = null;
    wake?.();
  }

  /** Resolves once a frame is there or the socket closed, or at ``until`` (ms). */
  arrival(until) {
    if (this.frames.length || this.closed) {
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.wake = null;
        resolve();
      }, until - Date.now());
      this.wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  /** The messages received so far, as ``[seq, text]`` pairs, oldest first. */
  take() {
    const messages = this.frames.map((frame) => {
      const newline = frame.indexOf('\n');
      return [Number(frame.slice(1, newline)), frame.slice(newline + 1)];
    });
    this.frames = [];
    return messages;
  }

  send(frame) {
    try {
      this.ws.send(frame);
    } catch {
      // closing: the object releases what it pushed
    }
  }

  close() {
    try {
      this.ws.close(1000, 'done');
    } catch {
      // already closed
    }
  }
}

/**
 * One listen stream relayed from the object's socket: a pull source, so that
 * the runtime asking for the next chunk tells that it took the previous one.
 */
class Relay {
  constructor(socket, idleMs) {
    this.socket = socket;
    this.idleMs = idleMs;
    this.idleDeadline = Date.now() + idleMs;
    this.written = null; // [last seq, count] of the chunk enqueued last
    this.taken = null; // the last message the runtime took, not confirmed yet
    this.takenCount = 0;
    this.confirmDue = Infinity;
    this.body = new ReadableStream({
      start: (controller) => controller.enqueue(ssePreamble()),
      pull: (controller) => this.pull(controller),
      cancel: () => this.end(), // the client went away
    });
  }

  async pull(controller) {
    if (this.written) {
      if (this.taken === null) {
        this.confirmDue = Date.now() + CONFIRM_DELAY_MS;
      }
      [this.taken] = this.written;
      this.takenCount += this.written[1];
      this.written = null;
    }
    for (;;) {
      if (this.takenCount >= CONFIRM_BATCH || Date.now() >= this.confirmDue) {
        this.confirm();
      }
      if (Date.now() >= this.idleDeadline) {
        break;
      }
      await this.socket.arrival(Math.min(this.idleDeadline, this.confirmDue));
      if (this.socket.closed) {
        break; // what it pushed and was not confirmed goes back to the queue
      }
      const messages = this.socket.take();
      if (messages.length) {
        controller.enqueue(sseEvents(messages));
        this.written = [messages.at(-1)[0], messages.length];
        this.idleDeadline = Date.now() + this.idleMs;
        return;
      }
    }
    this.end();
    controller.close();
  }

  confirm() {
    if (this.taken !== null) {
      this.socket.send(`c${this.taken}`);
    }
    this.taken = null;
    this.takenCount = 0;
    this.confirmDue = Infinity;
  }

  /** What the runtime took is confirmed before the socket closes. */
  end() {
    this.confirm();
    this.socket.close();
  }
}

/**
 * One mailbox: its queue in SQLite, its sender counts, and the sockets of the
 * Worker requests that wait for its messages (state in each socket's
 * attachment, cached in memory by tag).
 */
export class Mailbox extends DurableObject {
  constructor(ctx, env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    this.exists = mailboxExists(this.sql);
    this.sockets = null; // tag -> { ws, state }, loaded on first use
    this.counts = null; // { outgoing, completed }, loaded on first use
    this.countsWrittenAt = 0;
    this.countsTimer = null;
  }

  create() {
    if (!this.exists) {
      this.sql.exec('CREATE TABLE messages (seq INTEGER PRIMARY KEY, text TEXT NOT NULL)');
      this.sql.exec('CREATE TABLE counts (id INTEGER PRIMARY KEY, outgoing INTEGER, completed INTEGER)');
      this.exists = true;
    }
  }

  /** Queues a message (``toItself``: sent from this mailbox, so its bookkeeping too). */
  deliver(text, kind, toItself) {
    if (!this.exists) {
      return UNKNOWN;
    }
    this.sql.exec('INSERT INTO messages (text) VALUES (?)', text);
    if (toItself) {
      this.noteSent(kind);
    }
    this.dispatch();
    return null;
  }

  /** The sender's bookkeeping once a message it sent is queued. */
  noteSent(kind) {
    if (!this.exists) {
      return;
    }
    this.counts ??= this.sql.exec('SELECT outgoing, completed FROM counts').toArray()[0]
      ?? { outgoing: 0, completed: 0 };
    if (kind === 'request') {
      this.counts.outgoing += 1;
    } else if (kind === 'response') {
      this.counts.completed += 1;
    } else {
      return;
    }
    if (this.countsTimer !== null) {
      return; // the scheduled write carries this change
    }
    const wait = this.countsWrittenAt + COUNTS_WRITE_GAP_MS - Date.now();
    if (wait <= 0) {
      this.writeCounts();
    } else {
      this.countsTimer = setTimeout(() => {
        this.countsTimer = null;
        this.writeCounts();
      }, wait);
    }
  }

  writeCounts() {
    this.sql.exec(
      'INSERT OR REPLACE INTO counts (id, outgoing, completed) VALUES (1, ?, ?)',
      this.counts.outgoing,
      this.counts.completed,
    );
    this.countsWrittenAt = Date.now();
  }

  /** A subscription (the upgrade of the Worker's socket), or an answer at once. */
  fetch(request) {
    if (!this.exists) {
      return new Response(null, { status: UNKNOWN });
    }
    const poll = new URL(request.url).searchParams.get('wait') === 'poll';
    const sockets = this.loadSockets();
    if (poll) {
      const [first] = this.unleased(1);
      if (first) {
        this.sql.exec('DELETE FROM messages WHERE seq = ?', first.seq);
        return new Response(first.text);
      }
    } else {
      for (const [tag, { ws, state }] of sockets) {
        if (!state.poll) {
          sockets.delete(tag);
          ws.close(SUPERSEDED, 'superseded');
        }
      }
    }
    const [client, server] = Object.values(new WebSocketPair());
    const tag = crypto.randomUUID();
    this.ctx.acceptWebSocket(server, [tag]);
    const state = { poll, served: false, pending: [] };
    server.serializeAttachment(state);
    sockets.set(tag, { ws: server, state });
    this.dispatch();
    return new Response(null, { status: 101, webSocket: client });
  }

  /** The Worker confirms every message up to ``c<seq>``. */
  webSocketMessage(ws, frame) {
    const socket = this.loadSockets().get(this.ctx.getTags(ws)[0]);
    if (!socket || typeof frame !== 'string' || frame[0] !== 'c') {
      return;
    }
    const seq = Number(frame.slice(1));
    const { state } = socket;
    for (const held of state.pending) {
      if (held <= seq) {
        this.sql.exec('DELETE FROM messages WHERE seq = ?', held);
      }
    }
    state.pending = state.pending.filter((held) => held > seq);
    ws.serializeAttachment(state);
    this.dispatch();
  }

  /** The Worker's request ended or broke: what its socket held goes to the next. */
  webSocketClose(ws) {
    try {
      ws.close(1000, 'closed'); // before compatibility date 2026-04-07 the object must
    } catch {
      // already closed
    }
    this.loadSockets().delete(this.ctx.getTags(ws)[0]);
    this.dispatch();
  }

  webSocketError(ws) {
    this.webSocketClose(ws);
  }

  /** Pushes queued messages that no socket holds to the sockets with room. */
  dispatch() {
    for (const { ws, state } of this.loadSockets().values()) {
      const room = state.poll ? Number(!state.served) : STREAM_WINDOW - state.pending.length;
      if (room <= 0) {
        continue;
      }
      const messages = this.unleased(room);
      if (!messages.length) {
        return; // nothing more for any socket
      }
      for (const { seq, text } of messages) {
        state.pending.push(seq);
        ws.send(`m${seq}\n${text}`);
      }
      state.served = true;
      ws.serializeAttachment(state);
    }
  }

  /** Up to ``limit`` queued messages that no socket holds, oldest first. */
  unleased(limit) {
    const leased = new Set();
    for (const { state } of this.sockets.values()) {
      state.pending.forEach((seq) => leased.add(seq));
    }
    return this.sql
      .exec('SELECT seq, text FROM messages ORDER BY seq LIMIT ?', limit + leased.size)
      .toArray()
      .filter(({ seq }) => !leased.has(seq))
      .slice(0, limit);
  }

  /** The open sockets and their states, from their attachments after a wake-up. */
  loadSockets() {
    this.sockets ??= new Map(
      this.ctx.getWebSockets().map((ws) => [
        this.ctx.getTags(ws)[0],
        { ws, state: ws.deserializeAttachment() },
      ]),
    );
    return this.sockets;
  }
}
