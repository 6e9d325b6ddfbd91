"""Listeners that sleep and lose nothing: the Worker holds the stream and a
hibernatable socket to the mailbox object, which can be evicted while its
listener stays connected; delivery marks live in SQLite, so broken streams and
restarts lose nothing a client acknowledged.

Local workerd evicts an object 10 s after its last event, hibernated sockets or
not; ``x-exchange-object-boot`` (drawn when an object instance is built) tells
whether that happened.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

import pytest
import requests

from academy.exchange.cloud.client import HttpExchangeFactory
from academy.exchange.cloud.client import HttpExchangeTransport
from academy.message import Message
from academy.message import PingRequest
from cutting_proxy import CuttingProxy
from harness import Api
from harness import SSEStream
from harness import make_message
from harness import run
from harness import tag_of

pytestmark = pytest.mark.worker_only  # upstream holds streams in its own process

BOOT = 'x-exchange-object-boot'
EVICTED_AFTER_S = 10  # local workerd's idle eviction


@pytest.fixture
def costed(exchange_factory) -> Any:
    return exchange_factory(vars={'EXCHANGE_COST_HEADERS': 1})


def _boot(api: Api, mailbox: str) -> str:
    r = api.status(mailbox)
    assert r.status_code == 200, r.text
    return r.headers[BOOT]


def _listen(api: Api, mailbox: str) -> SSEStream:
    r = api.listen(mailbox, 60, read_timeout=10)
    assert r.status_code == 200, r.text
    return SSEStream(r)


def test_an_idle_listener_lets_its_object_sleep_and_gets_the_next_message_at_once(
    costed,
) -> None:
    api = Api(costed.url)
    src, dest = api.new_mailbox(), api.new_mailbox()
    before = _boot(api, dest)
    stream = _listen(api, dest)
    try:
        time.sleep(EVICTED_AFTER_S + 5)
        # A status call wakes the object: a new instance answers it.
        assert _boot(api, dest) != before
        message = make_message(src, dest)
        sent_at = time.monotonic()
        assert api.send(message).status_code == 200
        event = stream.next_event()
        assert event.data == message
        # Arrives on the same open stream, pushed (a hang guard, not a speed test).
        assert time.monotonic() - sent_at < 5
    finally:
        stream.close()


def test_twenty_idle_listeners_let_all_twenty_objects_sleep(costed) -> None:
    api = Api(costed.url)
    src = api.new_mailbox()
    mailboxes = [api.new_mailbox() for _ in range(20)]
    boots = [_boot(api, mailbox) for mailbox in mailboxes]
    streams = [_listen(api, mailbox) for mailbox in mailboxes]
    try:
        time.sleep(30)
        rebuilt = [_boot(api, mailbox) != boot for mailbox, boot in zip(mailboxes, boots)]
        assert rebuilt == [True] * 20
        for mailbox, stream in zip(mailboxes, streams):
            message = make_message(src, mailbox)
            assert api.send(message).status_code == 200
            assert stream.next_event().data == message
    finally:
        for stream in streams:
            stream.close()


async def _transport(url: str) -> HttpExchangeTransport:
    info = HttpExchangeFactory(url, request_timeout_s=60)._info
    return await HttpExchangeTransport.new(connection_info=info, auth_method=None)


class Sender(threading.Thread):
    """Sends ``count`` messages to ``dest`` with raw HTTP, one every ``gap_s``;
    records the tags of those the exchange acknowledged (answered 200) and of
    those it did not answer (a send cut by a crash may or may not be stored).
    A failed send is not repeated: the next message has a new tag."""

    def __init__(self, url_of, src: str, dest: str, count: int, gap_s: float) -> None:
        super().__init__(daemon=True)
        self.url_of = url_of
        self.src, self.dest, self.count, self.gap_s = src, dest, count, gap_s
        self.acknowledged: list[str] = []
        self.unanswered: list[str] = []

    def run(self) -> None:
        session = requests.Session()
        for n in range(self.count):
            message = make_message(self.src, self.dest, body=f'{{"n": {n}}}')
            try:
                r = session.put(self.url_of() + '/message', json={'message': message}, timeout=10)
                answered = r.status_code == 200
            except requests.RequestException:
                answered = False
            if answered:
                self.acknowledged.append(tag_of(message))
                time.sleep(self.gap_s)
            else:
                self.unanswered.append(tag_of(message))
                time.sleep(0.25)


async def _receive_through_breaks(
    transport: HttpExchangeTransport, expected: int, deadline_s: float, got: list[str],
) -> int:
    """Reads messages into ``got`` with the stock transport; after each broken
    stream it calls ``listen()`` again on the same transport, which sends
    ``Last-Event-Id``. Returns how many times a stream broke."""
    breaks = 0
    deadline = time.monotonic() + deadline_s
    while len(got) < expected and time.monotonic() < deadline:
        try:
            stream = transport.listen(timeout=deadline - time.monotonic())
            async for message in stream:
                got.append(str(message.tag))
                if len(got) >= expected:
                    break
            await stream.aclose()
        except (TimeoutError, asyncio.TimeoutError):
            break
        except Exception:  # noqa: BLE001 - a broken stream, as the client sees it
            breaks += 1
            await asyncio.sleep(0.2)
    return breaks


def test_streams_cut_mid_event_lose_and_repeat_nothing_with_last_event_id(costed) -> None:
    api = Api(costed.url)
    with CuttingProxy(costed.port, cut_every=40) as proxy:

        async def scenario() -> tuple[list[str], int, list[str]]:
            transport = await _transport(proxy.url)
            try:
                dest = transport.mailbox_id.model_dump_json()
                sender = Sender(lambda: costed.url, api.new_mailbox(), dest, 400, 0.002)
                sender.start()
                got: list[str] = []
                breaks = await _receive_through_breaks(transport, 400, 150, got)
                sender.join(timeout=60)
                return got, breaks, sender.acknowledged
            finally:
                await transport.close()

        got, breaks, acknowledged = run(scenario(), 200)
        assert len(acknowledged) == 400
        assert breaks >= 8 and proxy.cuts >= 8
        assert got == acknowledged  # every message once, in order


def test_a_kill_9_loses_and_repeats_nothing_acknowledged(exchange_factory, tmp_path) -> None:
    persist = tmp_path / 'persist'
    worker = exchange_factory(persist_dir=persist)
    api = Api(worker.url)
    with CuttingProxy(worker.port, cut_every=10**9) as proxy:
        current = {'url': worker.url}

        async def scenario() -> tuple[list[str], Sender]:
            transport = await _transport(proxy.url)
            got: list[str] = []
            try:
                dest = transport.mailbox_id.model_dump_json()
                sender = Sender(lambda: current['url'], api.new_mailbox(), dest, 150, 0.02)
                sender.start()
                receiving = asyncio.ensure_future(_receive_through_breaks(transport, 150, 150, got))
                while len(sender.acknowledged) < 50:  # messages are flowing
                    await asyncio.sleep(0.05)
                worker.kill()
                worker.start()
                current['url'] = worker.url
                proxy.target_port = worker.port
                while sender.is_alive():
                    await asyncio.sleep(0.1)
                # Everything acknowledged arrives; then a moment for stragglers.
                waited = time.monotonic()
                while not set(sender.acknowledged) <= set(got) and time.monotonic() - waited < 60:
                    await asyncio.sleep(0.1)
                await asyncio.sleep(2)
                receiving.cancel()
                await asyncio.gather(receiving, return_exceptions=True)
                return got, sender
            finally:
                await transport.close()

        got, sender = run(scenario(), 240)
    # Each acknowledged message exactly once and in order; a send the crash left
    # unanswered may or may not have been stored, so it arrives at most once.
    assert len(sender.acknowledged) >= 100
    assert len(got) == len(set(got))
    acknowledged = set(sender.acknowledged)
    assert [tag for tag in got if tag in acknowledged] == sender.acknowledged
    assert set(got) - acknowledged <= set(sender.unanswered)


def test_what_went_to_a_stream_whose_client_left_comes_back_with_last_event_id(costed) -> None:
    api = Api(costed.url)
    src, dest = api.new_mailbox(), api.new_mailbox()
    stream = _listen(api, dest)
    first, second, third = (make_message(src, dest) for _ in range(3))
    assert api.send(first).status_code == 200
    seen = stream.next_event()
    assert seen.data == first
    stream.close()  # the client leaves; the exchange learns it only later
    assert api.send(second).status_code == 200
    assert api.send(third).status_code == 200
    r = api.listen(dest, 2, headers={'Last-Event-Id': seen.id})
    assert r.status_code == 200, r.text
    again = SSEStream(r)
    try:
        assert [again.next_event().data for _ in range(2)] == [second, third]
    finally:
        again.close()
    assert api.recv(dest, 0.5).status_code == 408


def test_a_long_poll_waits_on_a_sleeping_object_and_is_answered_by_a_send(costed) -> None:
    api = Api(costed.url)
    src, dest = api.new_mailbox(), api.new_mailbox()
    before = _boot(api, dest)
    message = make_message(src, dest)
    timer = threading.Timer(EVICTED_AFTER_S + 4, lambda: api.send(message))
    timer.start()
    try:
        r = api.recv(dest, 30, http_timeout=40)
    finally:
        timer.cancel()
    assert r.status_code == 200, r.text
    assert r.json() == {'message': message}
    assert _boot(api, dest) != before


def test_last_event_id_replays_what_a_stream_delivered_after_it(costed) -> None:
    api = Api(costed.url)
    src, dest = api.new_mailbox(), api.new_mailbox()
    sent = [make_message(src, dest, body=f'{{"n": {n}}}') for n in range(4)]
    for message in sent:
        assert api.send(message).status_code == 200
    stream = _listen(api, dest)
    events = [stream.next_event() for _ in sent]
    stream.close()
    assert [event.data for event in events] == sent
    # Reconnect saying the client saw only the first event.
    r = api.listen(dest, 2, headers={'Last-Event-Id': events[0].id})
    assert r.status_code == 200, r.text
    replay = SSEStream(r)
    try:
        again = [replay.next_event() for _ in sent[1:]]
    finally:
        replay.close()
    assert [event.data for event in again] == sent[1:]
    assert [event.id for event in again] == [event.id for event in events[1:]]
    # Without Last-Event-Id nothing delivered comes back.
    assert api.recv(dest, 0.5).status_code == 408
    assert json.loads(sent[0])  # the texts were valid JSON all along
