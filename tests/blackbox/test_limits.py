"""Hostile input cannot exhaust the Worker's memory.

The Worker reads a body as a stream and refuses it the moment it passes the body
limit, so an upload of any size -- chunked, with no length to refuse it by --
costs it no more than the limit. Bodies go over a raw socket that stops sending
as soon as the answer arrives (a hostile client would not; a test must stay
bounded), and every upload is bounded in size and time.

The worker here is served by workerd without ``wrangler dev``'s proxy: that
proxy turns an answer given before the upload ends into a 503 or a cut response
(6 of 20 refusals here), which no deployed Worker has in front of it.
"""

from __future__ import annotations

import http.client
import io
import itertools
import json
import re
import select
import socket
import time
from collections.abc import Iterable
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from harness import Api
from harness import ExchangeProcess
from harness import make_message
from harness import MESSAGE_SIZE_LIMIT
from harness import serving
from harness import tag_of
from harness import WorkerdDirectProcess

pytestmark = pytest.mark.worker_only  # workerd's memory, the Worker's own 413 text

MIB = 1 << 20
# The Worker's body limit at the default message limit: room for the message text
# escaped (up to 6 bytes a byte) and the other fields.
BODY_LIMIT = 6 * MESSAGE_SIZE_LIMIT + 64 * 1024
HOSTILE_BODY_BYTES = 300 * MIB
HOSTILE_REQUESTS = 4
# Far above what a refusal takes (well under a second here): it only keeps a
# test from hanging if the Worker reads the whole body again.
ANSWER_BOUND_S = 20
RSS_GROWTH_BOUND = 100 * 1000 * 1000
BODY_TOO_LARGE = re.compile(r'Request body of size (\d+) larger than limit (\d+)\.')

ROUTES = [
    ('POST', '/mailbox'),
    ('DELETE', '/mailbox'),
    ('GET', '/mailbox'),
    ('PUT', '/message'),
    ('GET', '/message'),
    ('GET', '/mailbox/listen'),
    ('GET', '/discover'),
    ('POST', '/mailbox/share'),
    ('GET', '/mailbox/share'),
    ('DELETE', '/mailbox/share'),
    ('POST', '/mailbox/heartbeat'),
    ('GET', '/mailbox/heartbeat'),
    ('GET', '/mailbox/stats'),
]


@dataclass
class Answer:
    status: int
    text: str
    sent: int  # body bytes written before the answer came


def upload(
    url: str,
    method: str,
    path: str,
    chunks: Iterable[bytes],
    *,
    declared_length: int | None = None,
) -> Answer:
    """Send a body chunk by chunk -- chunked, or raw after ``declared_length`` --
    until the server answers or the body ends, then read the answer until the
    server closes the connection. Fails if that takes over ``ANSWER_BOUND_S``."""
    port = int(url.rsplit(':', 1)[1])
    framing = (
        f'content-length: {declared_length}'
        if declared_length is not None
        else 'transfer-encoding: chunked'
    )
    head = (
        f'{method} {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n'
        f'content-type: application/json\r\nconnection: close\r\n{framing}\r\n\r\n'
    ).encode()

    def frames() -> Iterator[bytes]:
        for chunk in chunks:
            if declared_length is not None:
                yield chunk
            elif chunk:
                yield b'%x\r\n' % len(chunk) + chunk + b'\r\n'
        if declared_length is None:
            yield b'0\r\n\r\n'

    deadline = time.monotonic() + ANSWER_BOUND_S
    sent = 0
    received = bytearray()
    with socket.create_connection(('127.0.0.1', port), timeout=10) as sock:
        sock.sendall(head)
        sock.setblocking(False)
        unsent = frames()
        pending = memoryview(next(unsent, b''))
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f'no answer within {ANSWER_BOUND_S} s ({sent} bytes sent)'
            writers = [sock] if pending and not received else []
            readable, writable, _ = select.select([sock], writers, [], min(left, 1))
            if readable:
                try:
                    data = sock.recv(MIB)
                except ConnectionResetError:
                    break  # a refused upload is reset once the answer is out
                if not data:
                    break
                received += data
            elif writable:
                try:
                    written = sock.send(pending)
                except (BrokenPipeError, ConnectionResetError):
                    pending = memoryview(b'')  # refused; the answer may be waiting
                    continue
                sent += written
                pending = pending[written:] or memoryview(next(unsent, b''))
    response = http.client.HTTPResponse(_Received(bytes(received)), method=method)
    response.begin()
    return Answer(response.status, response.read().decode('utf-8', 'replace'), sent)


class _Received:
    """The one thing ``http.client`` asks of a socket, over bytes received."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def makefile(self, mode: str) -> io.BytesIO:
        return io.BytesIO(self.data)


def hostile_chunks(total: int = HOSTILE_BODY_BYTES) -> Iterator[bytes]:
    """``total`` bytes (a whole number of MiB) of a JSON string that never ends."""
    block = b'a' * MIB
    yield b'{"message": "' + block[13:]
    yield from itertools.repeat(block, total // MIB - 1)


def assert_refused_at_the_limit(answer: Answer) -> None:
    assert answer.status == 413, (answer.status, answer.text[:200])
    match = BODY_TOO_LARGE.fullmatch(answer.text)
    assert match, answer.text[:200]
    size, limit = int(match.group(1)), int(match.group(2))
    assert limit == BODY_LIMIT
    # The size is what had arrived: the limit and the chunk that passed it (what
    # the runtime hands over at once, a few KiB here), not the whole upload.
    assert limit < size < limit + MIB


def assert_still_serves(api: Api) -> None:
    mid = api.new_mailbox()
    message = make_message(mid, mid)
    assert api.send(message).status_code == 200
    assert tag_of(api.recv_message(mid, 5)) == tag_of(message)


@pytest.fixture(scope='module')
def worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExchangeProcess]:
    """A private worker for this module, served by workerd directly."""
    yield from serving(WorkerdDirectProcess(log_dir=tmp_path_factory.mktemp('limits-log')))


def test_huge_chunked_bodies_are_refused_at_the_limit_without_growing_memory(
    worker: ExchangeProcess,
) -> None:
    api = Api(worker.url)
    # First use of each path (objects, the refusal itself) is not growth.
    assert_still_serves(api)
    assert_refused_at_the_limit(upload(worker.url, 'PUT', '/message', hostile_chunks(8 * MIB)))
    before = worker.resident_bytes()

    for _ in range(HOSTILE_REQUESTS):
        answer = upload(worker.url, 'PUT', '/message', hostile_chunks())
        assert_refused_at_the_limit(answer)
        # Answered long before the whole body was sent: it was not read to the end.
        assert answer.sent < HOSTILE_BODY_BYTES // 10, answer.sent

    growth = worker.resident_bytes() - before
    print(f'RSS growth over {HOSTILE_REQUESTS} hostile requests: {growth / 1e6:.1f} MB')
    assert growth < RSS_GROWTH_BOUND, f'{growth / 1e6:.1f} MB'
    assert_still_serves(api)


@pytest.mark.parametrize(('method', 'path'), ROUTES, ids=[f'{m} {p}' for m, p in ROUTES])
def test_every_route_refuses_a_chunked_body_over_the_limit(
    worker: ExchangeProcess,
    method: str,
    path: str,
) -> None:
    answer = upload(worker.url, method, path, hostile_chunks(8 * MIB))
    assert_refused_at_the_limit(answer)


def test_a_declared_length_over_the_limit_is_refused_before_the_body(
    worker: ExchangeProcess,
) -> None:
    answer = upload(
        worker.url,
        'PUT',
        '/message',
        hostile_chunks(8 * MIB),
        declared_length=HOSTILE_BODY_BYTES,
    )
    assert answer.status == 413, answer.text[:200]
    assert answer.text == (
        f'Request body of size {HOSTILE_BODY_BYTES} larger than limit {BODY_LIMIT}.'
    )
    assert answer.sent < 8 * MIB


def test_a_chunked_body_under_the_limit_is_read_whole(worker: ExchangeProcess) -> None:
    api = Api(worker.url)
    mid = api.new_mailbox()
    message = make_message(mid, mid, body='{"x": "' + 'b' * (MESSAGE_SIZE_LIMIT - 4096) + '"}')
    body = ('{"message": ' + json.dumps(message) + '}').encode()
    pieces = [body[i:i + 1000] for i in range(0, len(body), 1000)]
    answer = upload(worker.url, 'PUT', '/message', pieces)
    assert answer.status == 200, answer.text[:200]
    assert api.recv_message(mid, 5) == message


def test_a_content_length_that_lies_bounds_what_is_read(worker: ExchangeProcess) -> None:
    # The server reads exactly the declared bytes as the body; what follows is
    # not part of this request.
    answer = upload(
        worker.url,
        'PUT',
        '/message',
        hostile_chunks(8 * MIB),
        declared_length=100,
    )
    assert answer.status == 400, answer.text[:200]
    assert answer.text.startswith('Invalid request body: not valid JSON'), answer.text[:200]
    assert_still_serves(Api(worker.url))


@pytest.mark.parametrize('where', ['query', 'header'])
def test_the_runtime_refuses_a_request_head_over_128_kib(
    worker: ExchangeProcess,
    where: str,
) -> None:
    api = Api(worker.url)
    mid = api.new_mailbox()
    padding = 'x' * (129 * 1024)
    if where == 'query':
        r = api.request('GET', '/mailbox', params={'mailbox': mid, 'padding': padding})
    else:
        r = api.request('GET', '/mailbox', json={'mailbox': mid}, headers={'x-padding': padding})
    assert r.status_code == 431, (r.status_code, r.text[:200])
    assert api.status_value(mid) == 'ACTIVE'
