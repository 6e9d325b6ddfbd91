"""The workloads, driven through academy-py 1.0.0's own HTTP client.

Messages are sent and received with ``HttpExchangeTransport`` (the transport
under academy's ``ExchangeClient``: ``send`` is ``PUT /message``, ``listen`` is
the ``GET /mailbox/listen`` event stream); registry operations use its
``register_agent``, ``heartbeat_status`` (what ``ExchangeClient.status``
calls) and ``discover``. Only bulk set-up (the registered population), the
cost probes and the idle workload's status reads use raw HTTP.

Every message has a fresh tag. A :class:`Ledger` records who sent each tag and
in which position, and checks on arrival that each tag arrives exactly once and,
per sender, in the order sent; anything else is reported as an error.
"""

from __future__ import annotations

import asyncio
import collections
import json
import math
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import academy
import aiohttp
from academy.agent import Agent
from academy.exchange.cloud.client import HttpExchangeFactory, HttpExchangeTransport
from academy.identifier import EntityId, UserId
from academy.message import Message, PingRequest, SuccessResponse

# Longest a single step (one send, one wait for a message) may take, and the
# longest a whole workload may take. A workload that overruns is an error.
STEP_TIMEOUT_S = 30.0
WORKLOAD_TIMEOUT_S = 300.0
HTTP_TIMEOUT = aiohttp.ClientTimeout(total=60, sock_connect=10)


# ------------------------------------------------------------------ results


@dataclass
class Outcome:
    """What one workload run measured."""

    workload: str
    messages: int = 0  # messages delivered (the unit of throughput and cost)
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    # Per-operation latencies, for the registry workload.
    operations_ms: dict[str, list[float]] = field(default_factory=dict)

    @property
    def throughput(self) -> float | None:
        return self.messages / self.seconds if self.seconds and self.messages else None


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


class Ledger:
    """Exactly once and in per-sender order, for every tag sent."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.origin: dict[uuid.UUID, tuple[Any, int]] = {}
        self.sent_count: dict[Any, int] = {}
        self.next_expected: dict[Any, int] = {}
        self.arrived: set[uuid.UUID] = set()
        self.errors: list[str] = []

    def sent(self, sender: Any, tag: uuid.UUID) -> None:
        index = self.sent_count.get(sender, 0)
        self.sent_count[sender] = index + 1
        self.origin[tag] = (sender, index)

    def arrived_tag(self, tag: uuid.UUID) -> None:
        if tag in self.arrived:
            self.errors.append(f'{self.name}: duplicate message {tag}')
            return
        if tag not in self.origin:
            self.errors.append(f'{self.name}: unexpected message {tag}')
            return
        self.arrived.add(tag)
        sender, index = self.origin[tag]
        expected = self.next_expected.get(sender, 0)
        if index != expected:
            self.errors.append(
                f'{self.name}: sender {sender} message #{index} arrived when #{expected} was due (reordered)',
            )
        self.next_expected[sender] = max(expected, index + 1)

    def close(self) -> list[str]:
        lost = len(self.origin) - len(self.arrived)
        if lost:
            self.errors.append(f'{self.name}: {lost} of {len(self.origin)} message(s) lost')
        return self.errors


# ------------------------------------------------------------ client helpers


# 5xx answers seen by the client, which retries them once (academy's default):
# not an error by themselves, but reported (a retried send that had in fact
# been stored would show up as a duplicate).
server_errors = collections.Counter()


async def _count_5xx(session: Any, context: Any, params: aiohttp.TraceRequestEndParams) -> None:
    if params.response.status >= 500:
        server_errors[f'{params.method} {params.url.path} {params.response.status}'] += 1


_TRACE = aiohttp.TraceConfig()
_TRACE.on_request_end.append(_count_5xx)
_TRACE.freeze()


class Transport(HttpExchangeTransport):
    """academy's HTTP transport, unchanged except for a hook counting 5xx answers."""

    @classmethod
    def create_session(cls, connection_info: Any) -> aiohttp.ClientSession:
        session = super().create_session(connection_info)
        session.trace_configs.append(_TRACE)  # no public way to add one to a built session
        return session


async def connect(url: str) -> HttpExchangeTransport:
    """A new user mailbox and its transport, with HttpExchangeFactory's defaults
    (one retry of 5xx after 1 s, 60 s listen requests), as ``create_user_client``
    makes them."""
    info = HttpExchangeFactory(url)._info  # the factory's connection settings
    return await Transport.new(connection_info=info, auth_method=None)


def request(src: EntityId, dest: EntityId) -> Message[PingRequest]:
    return Message.create(src, dest, PingRequest())


def response_to(message: Message[Any]) -> Message[SuccessResponse]:
    return message.create_response(SuccessResponse())


class Inbox:
    """A transport's listen stream, read in the background into a queue."""

    def __init__(self, transport: HttpExchangeTransport) -> None:
        self.queue: asyncio.Queue[Message[Any]] = asyncio.Queue()
        self._task = asyncio.create_task(self._pump(transport.listen()))

    async def _pump(self, stream: AsyncIterator[Message[Any]]) -> None:
        async for message in stream:
            self.queue.put_nowait(message)

    async def next(self) -> Message[Any]:
        get = asyncio.ensure_future(self.queue.get())
        done, _ = await asyncio.wait({get, self._task}, timeout=STEP_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED)
        if get in done:
            return get.result()
        get.cancel()
        if self._task in done:
            raise RuntimeError(f'listen stream failed: {self._task.exception()!r}')
        raise TimeoutError(f'no message within {STEP_TIMEOUT_S}s')

    async def close(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


async def close_all(*transports: HttpExchangeTransport) -> None:
    await asyncio.gather(*(t.close() for t in transports), return_exceptions=True)


async def bounded(outcome: Outcome, body: Callable[[], Awaitable[None]]) -> None:
    """Run ``body`` within WORKLOAD_TIMEOUT_S; failures become errors."""
    try:
        await asyncio.wait_for(body(), WORKLOAD_TIMEOUT_S)
    except Exception as e:  # noqa: BLE001 - reported, and fails the run
        outcome.errors.append(f'{outcome.workload}: {type(e).__name__}: {e}')


# ----------------------------------------------------------------- workloads


async def self_round_trip(url: str, count: int) -> Outcome:
    """(1) One client sends to itself and receives through listen, one at a time."""
    outcome = Outcome('1 self round trip')
    ledger = Ledger(outcome.workload)
    client = await connect(url)
    inbox = Inbox(client)

    async def body() -> None:
        start = time.perf_counter()
        for _ in range(count):
            message = request(client.mailbox_id, client.mailbox_id)
            ledger.sent('self', message.tag)
            t0 = time.perf_counter()
            await client.send(message)
            got = await inbox.next()
            outcome.latencies_ms.append((time.perf_counter() - t0) * 1000)
            ledger.arrived_tag(got.tag)
            outcome.messages += 1
        outcome.seconds = time.perf_counter() - start

    try:
        await bounded(outcome, body)
    finally:
        await inbox.close()
        await close_all(client)
    outcome.errors += ledger.close()
    return outcome


async def request_response(url: str, pairs: int, in_flight: int) -> Outcome:
    """(2) ``in_flight`` callers share one requester mailbox; each sends a request
    to a responder mailbox, waits for its response, and repeats (``pairs`` in
    all). The responder answers every request it hears on its listen stream
    with a response sent concurrently, as academy's agent runtime does. Both
    directions are checked; each pair is two delivered messages."""
    outcome = Outcome(f'2 request/response K={in_flight}')
    requests_ledger = Ledger(outcome.workload + ' requests')
    responses_ledger = Ledger(outcome.workload + ' responses')
    requester, responder = await connect(url), await connect(url)
    lane_of: dict[uuid.UUID, int] = {}
    waiting: dict[uuid.UUID, asyncio.Future[Message[Any]]] = {}
    per_lane = max(1, pairs // in_flight)
    replies: set[asyncio.Task[None]] = set()  # response sends still under way

    async def respond() -> None:
        async for message in responder.listen():
            requests_ledger.arrived_tag(message.tag)
            reply = response_to(message)
            responses_ledger.sent(lane_of.get(message.tag), reply.tag)
            task = asyncio.create_task(responder.send(reply))
            replies.add(task)
            task.add_done_callback(replies.discard)

    async def collect() -> None:
        async for message in requester.listen():
            responses_ledger.arrived_tag(message.tag)
            future = waiting.pop(message.tag, None)
            if future is not None and not future.done():
                future.set_result(message)

    async def lane(index: int) -> None:
        for _ in range(per_lane):
            message = request(requester.mailbox_id, responder.mailbox_id)
            lane_of[message.tag] = index
            requests_ledger.sent(index, message.tag)
            future = asyncio.get_running_loop().create_future()
            waiting[message.tag] = future
            t0 = time.perf_counter()
            await requester.send(message)
            await asyncio.wait_for(future, STEP_TIMEOUT_S)
            outcome.latencies_ms.append((time.perf_counter() - t0) * 1000)
            outcome.messages += 2

    async def body() -> None:
        start = time.perf_counter()
        await asyncio.gather(*(lane(i) for i in range(in_flight)))
        outcome.seconds = time.perf_counter() - start

    listeners = [asyncio.create_task(respond()), asyncio.create_task(collect())]
    try:
        await bounded(outcome, body)
        # A response can arrive before its PUT has been answered: let those finish.
        if replies:
            await asyncio.wait(set(replies), timeout=STEP_TIMEOUT_S)
    finally:
        for task in listeners + list(replies):
            task.cancel()
        await asyncio.gather(*listeners, *replies, return_exceptions=True)
        await close_all(requester, responder)
    outcome.errors += requests_ledger.close() + responses_ledger.close()
    return outcome


async def fan_in(url: str, senders: int, each: int) -> Outcome:
    """(3) ``senders`` clients each send ``each`` requests, one after another, to
    one mailbox, all at once; it receives them through listen. Latency is from
    the start of a send to the message's arrival."""
    outcome = Outcome(f'3 fan-in {senders} senders')
    ledger = Ledger(outcome.workload)
    sink = await connect(url)
    sources = [await connect(url) for _ in range(senders)]
    sent_at: dict[uuid.UUID, float] = {}
    total = senders * each

    async def send_from(index: int, source: HttpExchangeTransport) -> None:
        for _ in range(each):
            message = request(source.mailbox_id, sink.mailbox_id)
            ledger.sent(index, message.tag)
            sent_at[message.tag] = time.perf_counter()
            await source.send(message)

    async def receive(inbox: Inbox) -> None:
        for _ in range(total):
            message = await inbox.next()
            arrived = time.perf_counter()
            ledger.arrived_tag(message.tag)
            if message.tag in sent_at:
                outcome.latencies_ms.append((arrived - sent_at[message.tag]) * 1000)
            outcome.messages += 1

    inbox = Inbox(sink)

    async def body() -> None:
        start = time.perf_counter()
        await asyncio.gather(receive(inbox), *(send_from(i, s) for i, s in enumerate(sources)))
        outcome.seconds = time.perf_counter() - start

    try:
        await bounded(outcome, body)
    finally:
        await inbox.close()
        await close_all(sink, *sources)
    outcome.errors += ledger.close()
    return outcome


# ------------------------------------------------------------------ registry


class Probe(Agent):
    """The class ``discover`` looks for: PROBES agents among the population."""


class Fresh(Agent):
    """The class of the agents registered while measuring ``register``."""


FILLER_CLASS = 'bench.Filler'  # the rest of the population (raw HTTP)
PROBES = 10
REGISTER_ATTEMPTS = 3


class Population:
    """The agents registered on one target: PROBES of class Probe (through the
    client) and the rest of class bench.Filler (raw HTTP, concurrently, to keep
    set-up time bounded)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.probes: set[uuid.UUID] = set()
        self.fillers: set[uuid.UUID] = set()

    @property
    def size(self) -> int:
        return len(self.probes) + len(self.fillers)

    async def grow_to(self, size: int, concurrency: int = 32) -> None:
        if not self.probes:
            client = await connect(self.url)
            try:
                for _ in range(PROBES):
                    self.probes.add((await client.register_agent(Probe)).agent_id.uid)
            finally:
                await client.close()
        missing = size - self.size
        if missing <= 0:
            return
        gate = asyncio.Semaphore(concurrency)
        connector = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(connector=connector, timeout=HTTP_TIMEOUT) as session:

            async def register_one() -> None:
                uid = uuid.uuid4()
                body = {
                    'mailbox': json.dumps({'uid': str(uid), 'name': None, 'role': 'agent'}),
                    'agent': FILLER_CLASS,
                }
                async with gate:
                    # Creating a mailbox is idempotent: retry 5xx and dropped
                    # connections, as the client would.
                    for attempt in range(REGISTER_ATTEMPTS):
                        try:
                            async with session.post(self.url + '/mailbox', json=body) as r:
                                if r.status == 200:
                                    self.fillers.add(uid)
                                    return
                                problem = f'{r.status} {(await r.text())[:200]}'
                                if r.status < 500:
                                    raise RuntimeError(f'registering a filler agent: {problem}')
                        except aiohttp.ClientConnectionError as e:
                            problem = f'{type(e).__name__}: {e}'
                        if attempt == REGISTER_ATTEMPTS - 1:
                            raise RuntimeError(f'registering a filler agent: {problem}')
                        server_errors[f'POST /mailbox (population): {problem[:60]}'] += 1
                        await asyncio.sleep(1)

            await asyncio.wait_for(
                asyncio.gather(*(register_one() for _ in range(missing))),
                WORKLOAD_TIMEOUT_S,
            )


async def registry(
    population: Population,
    samples: int,
    discover_samples: int,
    budget_s: float,
) -> Outcome:
    """(4) With ``population`` registered: ``samples`` x (register a new agent,
    then its status), then up to ``discover_samples`` discovers of Probe (PROBES
    matches) and of the filler class (every filler matches), each loop also
    stopping after ``budget_s`` (at least one sample each). Every discover must
    return exactly the expected agents."""
    outcome = Outcome(f'4 registry N={population.size}')
    ops: dict[str, list[float]] = {'register': [], 'status': [], 'discover': [], 'discover_all': []}
    outcome.operations_ms = ops
    client = await connect(population.url)

    def check(name: str, found: tuple[Any, ...], expected: set[uuid.UUID]) -> None:
        uids = [a.uid for a in found]
        if len(uids) != len(set(uids)) or set(uids) != expected:
            outcome.errors.append(
                f'{outcome.workload}: {name} returned {len(uids)} agents '
                f'({len(set(uids) & expected)} of the {len(expected)} expected)',
            )

    async def timed(name: str, call: Awaitable[Any]) -> Any:
        t0 = time.perf_counter()
        result = await asyncio.wait_for(call, STEP_TIMEOUT_S)
        ops[name].append((time.perf_counter() - t0) * 1000)
        return result

    def within_budget(count: int) -> Iterator[int]:
        """range(count), cut short once budget_s has passed (one at least)."""
        deadline = time.monotonic() + budget_s
        for i in range(count):
            if i > 0 and time.monotonic() >= deadline:
                return
            yield i

    async def body() -> None:
        for _ in within_budget(samples):
            registration = await timed('register', client.register_agent(Fresh))
            heartbeat = await timed('status', client.heartbeat_status(registration.agent_id))
            if heartbeat is not None:
                outcome.errors.append(f'{outcome.workload}: new agent has a heartbeat: {heartbeat}')
        for _ in within_budget(discover_samples):
            found = await timed('discover', client.discover(Probe, allow_subclasses=False))
            check('discover', found, population.probes)
        for _ in within_budget(discover_samples):
            found = await timed('discover_all', client.discover(FILLER_CLASS, allow_subclasses=False))
            check('discover all', found, population.fillers)

    try:
        await bounded(outcome, body)
    finally:
        await client.close()
    return outcome


# ---------------------------------------------------------------------- cost


# The probes speak raw HTTP as academy-py 1.0 does: with its version header, which
# tells the worker that the client sends its own heartbeats (requests without it
# also stamp one, as academy-py 0.5's server did).
CLIENT_HEADERS = {'academy_version': academy.__version__}

# With EXCHANGE_COST_HEADERS=1 (builds since the hibernating listen design), a
# mailbox object's answers carry its instance's id, and its isolate's rows written
# and mailbox objects constructed (first use, or a wake-up after hibernation or
# eviction) so far.
BOOT_HEADER = 'x-exchange-object-boot'
ISOLATE_ROWS_HEADER = 'x-exchange-isolate-rows-written'
CONSTRUCTED_HEADER = 'x-exchange-isolate-objects-constructed'


# Builds since the staged record writes write a sender's counts at most once a
# second, the rest by a timer after the answers: a probe waits this long after
# its last message before it reads the objects' rows written.
RECORD_WRITES_SETTLE_S = 1.5

# Builds since then also report the rows the answering object instance has
# written so far: unlike the isolate's count, no other object's writes (another
# mailbox's alarm, from an earlier workload) are in it.
OBJECT_ROWS_HEADER = 'x-exchange-object-rows-written'


async def _object_rows(
    session: aiohttp.ClientSession, url: str, mailboxes: list[EntityId],
) -> tuple[int, list[str]] | None:
    """The rows written so far by these mailboxes' objects, summed, and their
    instance ids (from ``GET /mailbox``); None when the build does not say."""
    total, boots = 0, []
    for mailbox in mailboxes:
        headers = await _status(session, url, mailbox)
        if OBJECT_ROWS_HEADER not in headers:
            return None
        total += int(headers[OBJECT_ROWS_HEADER])
        boots.append(headers[BOOT_HEADER])
    return total, boots


def _rows_between(
    before: tuple[int, list[str]] | None, after: tuple[int, list[str]] | None,
) -> int | None:
    """Rows the objects wrote between two :func:`_object_rows` readings."""
    if before is None or after is None:
        return None
    if before[1] != after[1]:
        raise RuntimeError('a mailbox object was rebuilt during the cost probe')
    return after[0] - before[0]


async def worker_costs(url: str, count: int) -> dict[str, Any]:
    """Durable Object calls and SQLite rows written per delivered message, from
    the worker's cost headers: ``count`` request messages sent to one mailbox
    and received with ``GET /message``, one at a time. Object calls: both
    calls' ``x-exchange-object-calls`` summed. Rows: what the sender's and the
    destination's objects wrote (``x-exchange-object-rows-written`` of each,
    read before the first message and :data:`RECORD_WRITES_SETTLE_S` after the
    last), so writes no answer reports (a sender's counts written by its
    timer) count too; builds without that header sum the calls'
    ``x-exchange-rows-written``. "n/a" when the worker does not send the
    headers."""
    calls = rows = 0
    ledger = Ledger('cost probe')
    async with aiohttp.ClientSession(timeout=HTTP_TIMEOUT, headers=CLIENT_HEADERS) as session:

        async def call(method: str, path: str, body: dict[str, Any]) -> str:
            nonlocal calls, rows
            async with session.request(method, url + path, json=body) as r:
                text = await r.text()
                if r.status != 200:
                    raise RuntimeError(f'{method} {path}: {r.status} {text}')
                if 'x-exchange-object-calls' not in r.headers:
                    raise LookupError('no cost headers')
                calls += int(r.headers['x-exchange-object-calls'])
                rows += int(r.headers['x-exchange-rows-written'])
                return text

        src, dest = UserId.new(), UserId.new()
        bodies = [{'mailbox': mailbox.model_dump_json()} for mailbox in (src, dest)]
        try:
            for body in bodies:
                await call('POST', '/mailbox', body)
            await asyncio.sleep(RECORD_WRITES_SETTLE_S)
            before = await _object_rows(session, url, [src, dest])
            calls = rows = 0  # count only the messages
            for _ in range(count):
                message = request(src, dest)
                ledger.sent('src', message.tag)
                await call('PUT', '/message', {'message': message.model_dump_json()})
                text = await call('GET', '/message', {**bodies[1], 'timeout': 5})
                ledger.arrived_tag(Message.model_validate_json(json.loads(text)['message']).tag)
            await asyncio.sleep(RECORD_WRITES_SETTLE_S)
            after = await _object_rows(session, url, [src, dest])
        except LookupError:
            return {'object_calls_per_msg': 'n/a', 'rows_written_per_msg': 'n/a', 'errors': []}
    objects_rows = _rows_between(before, after)
    return {
        'object_calls_per_msg': calls / count,
        'rows_written_per_msg': (rows if objects_rows is None else objects_rows) / count,
        'errors': ledger.close(),
    }


async def listen_costs(url: str, count: int) -> dict[str, Any]:
    """What a message delivered over a listen stream costs, from the cost
    headers: ``count`` request messages sent one at a time with raw
    ``PUT /message`` to a mailbox whose ``GET /mailbox/listen`` stream a raw SSE
    reader holds, each read from the stream before the next is sent.

    Rows written per message: what the sender's and the destination's objects
    wrote between a reading before the first send and one
    :data:`RECORD_WRITES_SETTLE_S` after the last, once nothing is left
    unconfirmed (``x-exchange-object-rows-written``; for builds before it, the
    isolate's ``x-exchange-isolate-rows-written`` from the destination's
    answers, which counts every object of the isolate), divided by ``count``:
    the sends, the stream's confirmations, the sender's counts. Object calls
    per message: the sends' ``x-exchange-object-calls``, plus the messages the
    Worker sends the object on the stream's socket, counted as one confirmation
    per event: an upper bound (not visible from outside; confirmations are
    cumulative and batched). A build without the isolate header (before the
    hibernating listen design) gets "n/a" for both, and only the sends' own
    figures."""
    ledger = Ledger('listen cost probe')
    sends = {'calls': 0, 'rows': 0}
    async with aiohttp.ClientSession(timeout=HTTP_TIMEOUT, headers=CLIENT_HEADERS) as session:

        async def call(method: str, path: str, body: dict[str, Any]) -> aiohttp.ClientResponse:
            async with session.request(method, url + path, json=body) as r:
                await r.read()
                if r.status != 200:
                    raise RuntimeError(f'{method} {path}: {r.status} {await r.text()}')
                return r

        async def unconfirmed_cleared(mailbox: dict[str, Any]) -> aiohttp.ClientResponse:
            """The destination's stats once nothing sent is left unconfirmed."""
            for _ in range(100):
                r = await call('GET', '/mailbox/stats', mailbox)
                if json.loads(await r.text())['queued'] == 0:
                    return r
                await asyncio.sleep(0.05)
            raise RuntimeError('a delivered message stayed unconfirmed for 5 s')

        src, dest = UserId.new(), UserId.new()
        bodies = [{'mailbox': mailbox.model_dump_json()} for mailbox in (src, dest)]
        for body in bodies:
            await call('POST', '/mailbox', body)
        dest_body = bodies[1]
        stream = await session.get(
            url + '/mailbox/listen',
            json={**dest_body, 'timeout': 60},
            headers={'Accept': 'text/event-stream', 'Cache-Control': 'no-cache'},
        )
        try:
            if stream.status != 200:
                raise RuntimeError(f'GET /mailbox/listen: {stream.status} {await stream.text()}')
            await asyncio.sleep(RECORD_WRITES_SETTLE_S)
            before = await unconfirmed_cleared(dest_body)
            objects_before = await _object_rows(session, url, [src, dest])
            for _ in range(count):
                message = request(src, dest)
                ledger.sent('src', message.tag)
                r = await call('PUT', '/message', {'message': message.model_dump_json()})
                sends['calls'] += int(r.headers['x-exchange-object-calls'])
                sends['rows'] += int(r.headers['x-exchange-rows-written'])
                data = await asyncio.wait_for(next_event_data(stream.content), STEP_TIMEOUT_S)
                ledger.arrived_tag(Message.model_validate_json(data).tag)
            await asyncio.sleep(RECORD_WRITES_SETTLE_S)
            after = await unconfirmed_cleared(dest_body)
            objects_after = await _object_rows(session, url, [src, dest])
        finally:
            stream.close()
    figures: dict[str, Any] = {
        'send_object_calls_per_msg': sends['calls'] / count,
        'send_rows_written_per_msg': sends['rows'] / count,
        'object_calls_per_msg': 'n/a',
        'rows_written_per_msg': 'n/a',
        'errors': ledger.close(),
    }
    if ISOLATE_ROWS_HEADER in after.headers:
        confirmations = len(ledger.arrived)
        figures['object_calls_per_msg'] = (sends['calls'] + confirmations) / count
        written = _rows_between(objects_before, objects_after)
        if written is None:
            written = int(after.headers[ISOLATE_ROWS_HEADER]) - int(before.headers[ISOLATE_ROWS_HEADER])
        figures['rows_written_per_msg'] = written / count
    return figures


async def next_event_data(content: aiohttp.StreamReader) -> str:
    """The data of the next server-sent event that carries any (comments and
    ``id:``/``retry:`` fields are skipped)."""
    data: list[str] = []
    async for raw in content:
        line = raw.decode().rstrip('\r\n')
        if line.startswith('data:'):
            data.append(line[5:].removeprefix(' '))
        elif not line and data:
            return '\n'.join(data)
    raise RuntimeError('the listen stream ended')


# ------------------------------------------------------------ idle listeners


class IdleListeners:
    """(5) ``count`` listeners, each academy's ``listen()`` (as :class:`Inbox`
    reads it) on a fresh mailbox of its own. :meth:`open` connects them and
    proves every stream is open with one message each; :meth:`boots` reads each
    mailbox object's instance id; :meth:`objects_constructed` reads the
    isolate's count of mailbox objects built; :meth:`check_delivery` sends one
    more message to each and checks each listener gets it (a loss is an error)."""

    def __init__(self, url: str, count: int) -> None:
        self.url = url
        self.count = count
        self.ledger = Ledger('5 idle listeners')
        self.sender: HttpExchangeTransport | None = None
        self.listeners: list[HttpExchangeTransport] = []
        self.inboxes: list[Inbox] = []
        # A mailbox id never created (its status answers MISSING; its object
        # stores nothing): reading the count through it wakes no listener's object.
        self.counter = UserId.new()

    async def open(self) -> None:
        self.sender = await connect(self.url)
        for _ in range(self.count):
            self.listeners.append(await connect(self.url))
            self.inboxes.append(Inbox(self.listeners[-1]))
        await self.check_delivery()

    async def check_delivery(self) -> None:
        assert self.sender is not None
        for index, listener in enumerate(self.listeners):
            message = request(self.sender.mailbox_id, listener.mailbox_id)
            self.ledger.sent(index, message.tag)
            await self.sender.send(message)
        for inbox in self.inboxes:
            self.ledger.arrived_tag((await inbox.next()).tag)

    async def boots(self) -> list[str | None]:
        """Each listener's mailbox object instance (``GET /mailbox`` status), None
        when the answer has no boot header."""
        async with aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as session:
            return [
                (await _status(session, self.url, listener.mailbox_id)).get(BOOT_HEADER)
                for listener in self.listeners
            ]

    async def objects_constructed(self) -> tuple[int, str] | None:
        """The isolate's count of mailbox objects built so far and the instance
        of the counter mailbox that answered (local workerd serves every object
        from one isolate); None when the build does not report the count."""
        async with aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as session:
            headers = await _status(session, self.url, self.counter)
        if CONSTRUCTED_HEADER not in headers:
            return None
        return int(headers[CONSTRUCTED_HEADER]), headers[BOOT_HEADER]

    async def close(self) -> list[str]:
        """Stops the listeners; returns every loss, duplicate or reordering."""
        await asyncio.gather(*(inbox.close() for inbox in self.inboxes))
        await close_all(*self.listeners, *([self.sender] if self.sender else []))
        return self.ledger.close()


async def _status(session: aiohttp.ClientSession, url: str, mailbox: EntityId) -> Any:
    """The headers of the ``GET /mailbox`` (status) answer for ``mailbox``."""
    async with session.get(url + '/mailbox', json={'mailbox': mailbox.model_dump_json()}) as r:
        text = await r.text()
        if r.status != 200:
            raise RuntimeError(f'GET /mailbox: {r.status} {text}')
        return r.headers
