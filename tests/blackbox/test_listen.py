"""GET /mailbox/listen: server-sent events, read and parsed by hand."""

from __future__ import annotations

import json
import threading
import time
import uuid

import pytest
import requests
import urllib3

from harness import Api
from harness import make_message
from harness import new_id
from harness import SSEStream
from harness import tag_of

worker_only = pytest.mark.worker_only


def _open(api: Api, mailbox: str, timeout: float, read_timeout: float = 10) -> SSEStream:
    r = api.listen(mailbox, timeout, read_timeout=read_timeout)
    assert r.status_code == 200, r.text
    ctype = r.headers.get('content-type', '')
    assert ctype.split(';')[0].strip() == 'text/event-stream', ctype
    return SSEStream(r)


def _later(delay: float, fn, *args) -> threading.Timer:
    t = threading.Timer(delay, fn, args)
    t.daemon = True
    t.start()
    return t


def test_listen_on_unknown_mailbox_is_a_plain_404(api: Api) -> None:
    r = api.listen(new_id(), 5)
    try:
        assert r.status_code == 404
        assert 'text/event-stream' not in r.headers.get('content-type', '')
        assert r.text == 'Unknown mailbox ID'
    finally:
        r.close()


def test_listen_on_terminated_mailbox_is_a_plain_419(api: Api) -> None:
    mid = api.new_mailbox()
    api.terminate(mid)
    r = api.listen(mid, 5)
    try:
        assert r.status_code == 419
        assert 'text/event-stream' not in r.headers.get('content-type', '')
        assert r.text == 'Mailbox was closed'
    finally:
        r.close()


@pytest.mark.parametrize('timeout', [0, -2, 61])
def test_listen_with_out_of_range_timeout_is_400(api: Api, timeout: float) -> None:
    mid = api.new_mailbox()
    r = api.listen(mid, timeout)
    try:
        assert r.status_code == 400, r.text
        assert r.text.startswith('Invalid timeout'), r.text
    finally:
        r.close()


def test_queued_messages_stream_as_data_events_in_fifo_order(api: Api) -> None:
    src = api.new_mailbox()
    dest = api.new_mailbox()
    sent = [make_message(src, dest, body=f'{{"n": {i}}}') for i in range(5)]
    for msg in sent:
        assert api.send(msg).status_code == 200
    stream = _open(api, dest, 3)
    try:
        events = [stream.next_event() for _ in sent]
    finally:
        stream.close()
    assert all(ev is not None for ev in events)
    got = [json.loads(ev.data) for ev in events]
    assert [g['header']['tag'] for g in got] == [tag_of(m) for m in sent]
    assert [g['body'] for g in got] == [{'n': i} for i in range(5)]
    for g, m in zip(got, sent):
        assert g['header'] == json.loads(m)['header']


def test_messages_delivered_by_listen_leave_the_mailbox(api: Api) -> None:
    src = api.new_mailbox()
    dest = api.new_mailbox()
    msg = make_message(src, dest)
    api.send(msg)
    stream = _open(api, dest, 3)
    try:
        ev = stream.next_event()
    finally:
        stream.close()
    assert ev is not None and tag_of(ev.data) == tag_of(msg)
    assert api.recv(dest, 0.5).status_code == 408


def test_message_sent_while_listening_is_delivered_promptly(api: Api) -> None:
    src = api.new_mailbox()
    dest = api.new_mailbox()
    msg = make_message(src, dest)
    stream = _open(api, dest, 5)
    try:
        sender = Api(api.url)
        sent_at: list[float] = []

        def send() -> None:
            sent_at.append(time.monotonic())
            sender.send(msg)

        _later(0.5, send)
        ev = stream.next_event()
    finally:
        stream.close()
    assert ev is not None and tag_of(ev.data) == tag_of(msg)
    assert sent_at and ev.received_at - sent_at[0] < 2, ev.received_at - sent_at[0]


def test_stream_ends_after_timeout_without_messages(api: Api) -> None:
    mid = api.new_mailbox()
    t0 = time.monotonic()
    stream = _open(api, mid, 1.5)
    try:
        events = stream.drain()
    finally:
        stream.close()
    elapsed = time.monotonic() - t0
    assert events == []
    assert 1.0 <= elapsed < 5, elapsed
    # The mailbox itself is untouched.
    assert api.status_value(mid) == 'ACTIVE'


def test_stream_idle_timer_restarts_with_each_message(api: Api) -> None:
    src = api.new_mailbox()
    dest = api.new_mailbox()
    sender = Api(api.url)
    msgs = [make_message(src, dest) for _ in range(3)]
    t0 = time.monotonic()
    stream = _open(api, dest, 1.5)
    try:
        for i, m in enumerate(msgs):
            _later(0.8 * (i + 1), sender.send, m)
        events = stream.drain()
    finally:
        stream.close()
    elapsed = time.monotonic() - t0
    assert [tag_of(e.data) for e in events] == [tag_of(m) for m in msgs]
    assert 2.4 + 1.0 <= elapsed < 8, elapsed


def test_terminating_the_mailbox_ends_an_open_stream(api: Api) -> None:
    mid = api.new_mailbox()
    stream = _open(api, mid, 30)
    try:
        killer = Api(api.url)
        t_term: list[float] = []

        def term() -> None:
            t_term.append(time.monotonic())
            killer.terminate(mid)

        _later(0.5, term)
        events = stream.drain()
        ended = time.monotonic()
    finally:
        stream.close()
    assert events == []
    assert t_term and ended - t_term[0] < 3, ended - t_term[0]
    assert api.status_value(mid) == 'TERMINATED'


def test_the_academy_client_parser_accepts_the_stream(api: Api) -> None:
    # Feed the raw lines to academy's own SSE parser (HttpExchangeTransport).
    import asyncio

    from academy.exchange.cloud.client import HttpExchangeTransport

    src = api.new_mailbox()
    dest = api.new_mailbox()
    msgs = [make_message(src, dest) for _ in range(2)]
    for m in msgs:
        api.send(m)
    stream = _open(api, dest, 1.5)
    try:
        stream.drain()
        raw = bytes(stream.raw).decode()
    finally:
        stream.close()

    transport = HttpExchangeTransport.__new__(HttpExchangeTransport)
    transport._retry_time_ms = 1000
    transport._last_event_id = None
    parsed = []
    block: list[str] = []
    for line in raw.splitlines():  # the client strips \n then \r per line
        if line == '':
            m = asyncio.run(transport.parse(block)) if block else None
            block = []
            if m is not None:
                parsed.append(m)
        else:
            block.append(line)
    assert [str(m.tag) for m in parsed] == [tag_of(m) for m in msgs]


# ------------------------------------------------------ worker-only behaviour


@worker_only  # upstream (aiohttp-sse) sends no id: lines
def test_every_event_has_a_strictly_increasing_integer_id(api: Api) -> None:
    src = api.new_mailbox()
    dest = api.new_mailbox()
    for _ in range(4):
        api.send(make_message(src, dest))
    stream = _open(api, dest, 5)
    try:
        events = [stream.next_event() for _ in range(4)]
        # one more after the stream is already open
        _later(0.3, Api(api.url).send, make_message(src, dest))
        events.append(stream.next_event())
    finally:
        stream.close()
    assert all(ev is not None for ev in events)
    ids = [ev.id for ev in events]
    assert all(i is not None and i.isdigit() for i in ids), ids
    nums = [int(i) for i in ids]
    assert all(a < b for a, b in zip(nums, nums[1:])), nums


@worker_only  # upstream sends no retry: field
def test_stream_sends_a_retry_field(api: Api) -> None:
    mid = api.new_mailbox()
    stream = _open(api, mid, 1.5, read_timeout=5)
    try:
        stream.drain()
    finally:
        stream.close()
    assert stream.retries, bytes(stream.raw[:500])
    assert all(r.isdigit() and int(r) >= 0 for r in stream.retries), stream.retries


@worker_only  # upstream sends nothing until the first message
def test_first_bytes_arrive_immediately_as_a_comment(api: Api) -> None:
    mid = api.new_mailbox()
    t0 = time.monotonic()
    stream = _open(api, mid, 10, read_timeout=3)
    try:
        while not stream.comments:
            line = stream.next_line()  # raises on 3 s of silence
            assert line is not None, 'stream ended before any byte'
            assert not line.startswith('data'), line
            assert time.monotonic() - t0 < 3
    except (urllib3.exceptions.HTTPError, requests.exceptions.RequestException) as e:
        pytest.fail(f'no byte within 3 s: {e}')
    finally:
        stream.close()
    assert stream.first_bytes_at is not None
    assert stream.first_bytes_at - t0 < 3


@worker_only  # upstream pings every 15 s (aiohttp-sse default)
def test_idle_stream_gets_keep_alive_comments_every_second(api: Api) -> None:
    # The session exchange runs with SSE_KEEPALIVE_S=1.
    mid = api.new_mailbox()
    stream = _open(api, mid, 10, read_timeout=3)
    try:
        t0 = time.monotonic()
        while time.monotonic() - t0 < 4:
            line = stream.next_line()
            assert line is not None, 'stream ended while idle'
            assert not line.startswith('data'), line
    finally:
        stream.close()
    times = [t for t, _ in stream.comments if t > t0]
    assert len(times) >= 2, stream.comments
    gaps = [b - a for a, b in zip([t0, *times], times)]
    assert max(gaps) < 2.5, gaps


@worker_only  # upstream sends no keep-alives, so nothing to tell apart
def test_keep_alives_do_not_extend_the_idle_timeout(api: Api) -> None:
    mid = api.new_mailbox()
    t0 = time.monotonic()
    stream = _open(api, mid, 2.5, read_timeout=5)
    try:
        events = stream.drain()
    finally:
        stream.close()
    elapsed = time.monotonic() - t0
    assert events == []
    assert stream.comments, 'expected keep-alive comments'
    assert 2.0 <= elapsed < 6, elapsed


@worker_only  # upstream re-serializes the message
def test_event_data_is_the_message_text_byte_for_byte(api: Api) -> None:
    src = api.new_mailbox()
    dest = api.new_mailbox()
    tag = str(uuid.uuid4())
    # A newline between JSON tokens must come back as two data: lines.
    msg = (
        '{"header":  {"src": ' + src + ',\n "dest": ' + dest + ', "tag": "'
        + tag + '", "label": null, "kind": "request", '
        '"protocol_version": "1.1", "academy_version": "1.0.0"},\n'
        '\t"body": {"x": "é\\u00e9  ", "kind": "ping-request"}}'
    )
    plain = make_message(src, dest, body='{"y":   "\\u2603 ☃"}')
    assert api.send(msg).status_code == 200
    assert api.send(plain).status_code == 200
    stream = _open(api, dest, 5)
    try:
        first = stream.next_event()
        second = stream.next_event()
    finally:
        stream.close()
    assert first is not None and first.data == msg
    assert second is not None and second.data == plain
