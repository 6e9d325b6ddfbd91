"""The workloads, driven through academy-py 1.0.0's own HTTP transport.

Every message carries a fresh tag; receivers check that each tag arrives exactly
once and, per sender, in the order it was sent. Any loss, duplicate or reorder is
counted and reported."""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from academy.agent import Agent
from academy.exchange.cloud.client import HttpExchangeTransport, _HttpConnectionInfo
from academy.message import Header, Message, PingRequest

STEP_S = 60.0


class BenchTarget(Agent):
    """The class whose agents `discover` looks for."""


@dataclass
class Result:
    workload: str
    messages: int = 0
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.latencies_ms)
        pick = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] if lat else None  # noqa: E731
        return {
            'workload': self.workload,
            'messages': self.messages,
            'throughput_msg_s': self.messages / self.seconds if self.seconds else None,
            'p50_ms': statistics.median(lat) if lat else None,
            'p99_ms': pick(0.99),
            'errors': self.errors,
            **self.extra,
        }


async def transport(url: str) -> HttpExchangeTransport:
    info = _HttpConnectionInfo(url=url, additional_headers={})
    return await HttpExchangeTransport.new(connection_info=info, auth_method=None)


def message(src, dest, kind: str = 'request', tag: uuid.UUID | None = None) -> Message[Any]:
    header = Header(src=src, dest=dest, kind=kind, tag=tag or uuid.uuid4())
    return Message(header=header, body=PingRequest())


class OrderCheck:
    """Exactly once, in per-sender order."""

    def __init__(self) -> None:
        self.sent: dict[uuid.UUID, tuple[Any, int]] = {}
        self.next_index: dict[Any, int] = {}
        self.seen: set[uuid.UUID] = set()
        self.errors: list[str] = []

    def sending(self, sender: Any, tag: uuid.UUID) -> None:
        index = self.next_index.get(('sent', sender), 0)
        self.next_index[('sent', sender)] = index + 1
        self.sent[tag] = (sender, index)

    def received(self, tag: uuid.UUID) -> None:
        if tag in self.seen:
            self.errors.append(f'duplicate {tag}')
            return
        if tag not in self.sent:
            self.errors.append(f'unknown {tag}')
            return
        self.seen.add(tag)
        sender, index = self.sent[tag]
        expected = self.next_index.get(('got', sender), 0)
        if index != expected:
            self.errors.append(f'{sender}: got #{index}, expected #{expected}')
        self.next_index[('got', sender)] = index + 1

    def finish(self) -> list[str]:
        missing = len(self.sent) - len(self.seen)
        return self.errors + ([f'{missing} message(s) lost'] if missing else [])


async def receive(t: HttpExchangeTransport, count: int, on_message) -> None:
    got = 0
    async for msg in t.listen():
        await on_message(msg)
        got += 1
        if got >= count:
            return


async def self_round_trip(url: str, count: int) -> Result:
    """(1) One client sends to itself and receives through listen, one at a time."""
    result = Result('1 self round trip')
    t = await transport(url)
    check = OrderCheck()
    stream = t.listen().__aiter__()
    try:
        start = time.perf_counter()
        for _ in range(count):
            msg = message(t.mailbox_id, t.mailbox_id)
            check.sending('self', msg.tag)
            t0 = time.perf_counter()
            await t.send(msg)
            got = await asyncio.wait_for(stream.__anext__(), STEP_S)
            result.latencies_ms.append((time.perf_counter() - t0) * 1000)
            check.received(got.tag)
        result.seconds = time.perf_counter() - start
        result.messages = count
    finally:
        await stream.aclose()
        await t.close()
    result.errors = check.finish()
    return result


async def request_response(url: str, pairs: int, in_flight: int) -> Result:
    """(2) A requester keeps `in_flight` requests outstanding to a responder that
    answers each through its own listen stream."""
    result = Result(f'2 request/response K={in_flight}')
    requester, responder = await transport(url), await transport(url)
    requests_check, responses_check = OrderCheck(), OrderCheck()
    sent_at: dict[uuid.UUID, float] = {}
    window = asyncio.Semaphore(in_flight)

    async def answer(msg: Message[Any]) -> None:
        requests_check.received(msg.tag)
        response = message(responder.mailbox_id, msg.src, 'response', msg.tag)
        responses_check.sending('responder', msg.tag)
        await responder.send(response)

    async def collect(msg: Message[Any]) -> None:
        responses_check.received(msg.tag)
        result.latencies_ms.append((time.perf_counter() - sent_at.pop(msg.tag)) * 1000)
        window.release()

    async def send_all() -> None:
        for _ in range(pairs):
            await window.acquire()
            msg = message(requester.mailbox_id, responder.mailbox_id)
            requests_check.sending('requester', msg.tag)
            sent_at[msg.tag] = time.perf_counter()
            await requester.send(msg)

    try:
        start = time.perf_counter()
        await asyncio.wait_for(
            asyncio.gather(send_all(), receive(responder, pairs, answer), receive(requester, pairs, collect)),
            STEP_S * 5,
        )
        result.seconds = time.perf_counter() - start
        result.messages = pairs * 2
    except asyncio.TimeoutError:
        result.errors.append('timed out')
    finally:
        await requester.close()
        await responder.close()
    result.errors += requests_check.finish() + responses_check.finish()
    return result


async def fan_in(url: str, senders: int, each: int) -> Result:
    """(3) `senders` clients send to one mailbox at once; it receives via listen."""
    result = Result(f'3 fan-in {senders} senders')
    sink = await transport(url)
    sources = [await transport(url) for _ in range(senders)]
    check = OrderCheck()

    async def send_from(i: int, source: HttpExchangeTransport) -> None:
        for _ in range(each):
            msg = message(source.mailbox_id, sink.mailbox_id, 'response')
            check.sending(i, msg.tag)
            await source.send(msg)

    async def on_message(msg: Message[Any]) -> None:
        check.received(msg.tag)

    try:
        start = time.perf_counter()
        await asyncio.wait_for(
            asyncio.gather(receive(sink, senders * each, on_message),
                           *(send_from(i, s) for i, s in enumerate(sources))),
            STEP_S * 5,
        )
        result.seconds = time.perf_counter() - start
        result.messages = senders * each
    except asyncio.TimeoutError:
        result.errors.append('timed out')
    finally:
        for t in [sink, *sources]:
            await t.close()
    result.errors += check.finish()
    return result


async def populate(url: str, agents: int) -> None:
    """Registers `agents` filler agents (another class) with raw HTTP, 32 at once."""
    async with aiohttp.ClientSession() as session:
        semaphore = asyncio.Semaphore(32)

        async def one() -> None:
            async with semaphore:
                aid = f'{{"uid": "{uuid.uuid4()}", "name": null, "role": "agent"}}'
                async with session.post(url + '/mailbox', json={'mailbox': aid, 'agent': 'bench.Filler'}) as r:
                    r.raise_for_status()

        await asyncio.gather(*(one() for _ in range(agents)))


async def registry(url: str, population: int, samples: int) -> Result:
    """(4) register / status / discover latency with `population` agents registered
    (10 of them of the discovered class)."""
    result = Result(f'4 registry N={population}')
    await populate(url, population - 10)
    t = await transport(url)
    try:
        for _ in range(10):
            await t.register_agent(BenchTarget)
        timings: dict[str, list[float]] = {'register': [], 'status': [], 'discover': []}
        for _ in range(samples):
            t0 = time.perf_counter()
            registration = await t.register_agent(BenchTarget)
            t1 = time.perf_counter()
            await t.heartbeat_status(registration.agent_id)
            t2 = time.perf_counter()
            found = await t.discover(BenchTarget, allow_subclasses=False)
            t3 = time.perf_counter()
            timings['register'].append((t1 - t0) * 1000)
            timings['status'].append((t2 - t1) * 1000)
            timings['discover'].append((t3 - t2) * 1000)
            if registration.agent_id not in found:
                result.errors.append('a registered agent was not discovered at once')
        for name, values in timings.items():
            result.extra[f'{name}_p50_ms'] = statistics.median(values)
    finally:
        await t.close()
    return result


async def cost_per_message(url: str, count: int) -> dict[str, float]:
    """Object calls and SQLite rows written per delivered message (raw send + GET
    /message of request messages), from the worker's cost headers."""
    calls = rows = 0
    async with aiohttp.ClientSession() as session:
        ids = [f'{{"uid": "{uuid.uuid4()}", "name": null, "role": "user"}}' for _ in range(2)]
        for aid in ids:
            async with session.post(url + '/mailbox', json={'mailbox': aid}) as r:
                r.raise_for_status()
        for _ in range(count):
            text = (f'{{"header": {{"src": {ids[0]}, "dest": {ids[1]}, "tag": "{uuid.uuid4()}", '
                    f'"kind": "request"}}, "body": {{"kind": "ping-request"}}}}')
            for method, body in (('PUT', {'message': text}), ('GET', {'mailbox': ids[1], 'timeout': 5})):
                path = '/message'
                async with session.request(method, url + path, json=body) as r:
                    r.raise_for_status()
                    calls += int(r.headers['x-exchange-object-calls'])
                    rows += int(r.headers['x-exchange-rows-written'])
    return {'object_calls_per_msg': calls / count, 'rows_written_per_msg': rows / count}
