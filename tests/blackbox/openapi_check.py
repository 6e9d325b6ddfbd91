"""Checks recorded traffic against the OpenAPI document (``docs/openapi.json``).

``recording_proxy`` keeps the bytes of every connection; here they are split into
HTTP/1.1 requests and responses, paired in order, and each response is validated
by openapi-core against the operation its request named: status documented,
content type, body schema, required headers. A response to a path or method the
document does not describe must be the exchange's 404 ``No route for …`` or 405
``Method … is not allowed on …`` with an ``Allow`` header (or the 500 of a
deployment whose settings are invalid, which every request gets).

Set apart, not judged: answers the platform in front of the Worker gives itself
(``PLATFORM_ANSWERS``), and requests whose method is not a standard HTTP method,
which workerd hands the Worker as something else (it presents QUERY, PROPFIND,
MKCOL, SEARCH, PURGE, … as GET), so the Worker cannot answer them as such.
"""

from __future__ import annotations

import json
import zlib
from collections import Counter
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from urllib.parse import parse_qsl
from urllib.parse import urlsplit

from openapi_core import Config
from openapi_core import OpenAPI
from openapi_core.datatypes import RequestParameters
from openapi_core.templating.paths.exceptions import OperationNotFound
from openapi_core.templating.paths.exceptions import PathNotFound
from openapi_core.templating.paths.exceptions import ServerNotFound
from werkzeug.datastructures import Headers
from werkzeug.datastructures import ImmutableMultiDict

from recording_proxy import Capture

DOCUMENT = Path(__file__).resolve().parents[2] / 'docs' / 'openapi.json'

# Answers the Worker never gives (its texts are in src/protocol/error.rs), by status
# and start of body: wrangler dev's proxy, when its connection to the Worker drops
# under a non-GET request; workerd's HTTP server, refusing a request it cannot
# parse (`ERROR: …`) or a CONNECT (which never reaches a Worker).
PLATFORM_ANSWERS = (
    (503, b'Your worker restarted mid-request.'),
    (400, b'ERROR: '),
    (501, b'ERROR: '),
    (500, b'Internal Server Error'),
)

# RFC 9110's methods and PATCH: what the runtime hands the Worker as they are.
STANDARD_METHODS = {'GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH'}


@dataclass
class Message:
    """One HTTP message off the wire."""

    start_line: str
    headers: Headers
    body: bytes
    complete: bool


@dataclass
class Exchange:
    """A request and the response the exchange gave it."""

    request: Message
    response: Message

    @property
    def method(self) -> str:
        return self.request.start_line.split(' ')[0]

    @property
    def target(self) -> str:
        return self.request.start_line.split(' ')[1]

    @property
    def status(self) -> int:
        return int(self.response.start_line.split(' ')[1])

    def describe(self) -> str:
        body = self.response.body[:300].decode('utf-8', 'replace')
        return f'{self.method} {self.target} -> {self.status} {body!r}'


@dataclass
class Report:
    checked: Counter[str] = field(default_factory=Counter)
    outside_document: int = 0
    from_the_platform: int = 0
    other_methods: int = 0
    unchecked: int = 0
    mismatches: list[str] = field(default_factory=list)

    def summary(self) -> str:
        operations = len(self.checked)
        return (
            f'{sum(self.checked.values())} responses of {operations} operations match '
            f'{DOCUMENT.name}; {self.outside_document} answered routes it does not '
            f'describe (404/405/500, checked); {self.unchecked} not checkable (no answer, '
            f'or cut or larger than the capture); {self.from_the_platform} answered by '
            f'wrangler dev or workerd themselves; {self.other_methods} of non-standard '
            f'methods; {len(self.mismatches)} mismatches'
        )


def check(captures: list[Capture], document: dict | None = None) -> Report:
    # An event stream is text; openapi-core would otherwise judge its bytes.
    config = Config(extra_media_type_deserializers={'text/event-stream': bytes.decode})
    openapi = OpenAPI.from_dict(document or json.loads(DOCUMENT.read_text()), config=config)
    report = Report()
    for capture in captures:
        try:
            exchanges, unpaired = pair(capture)
        except ValueError as error:
            start = bytes(capture.answered.data[:200])
            report.mismatches.append(f'unreadable HTTP ({error}) in an answer starting {start!r}')
            continue
        report.unchecked += unpaired
        for exchange in exchanges:
            check_exchange(openapi, exchange, report)
    return report


def check_exchange(openapi: OpenAPI, exchange: Exchange, report: Report) -> None:
    response = exchange.response
    if any(
        exchange.status == status and response.body.startswith(start)
        for status, start in PLATFORM_ANSWERS
    ):
        report.from_the_platform += 1
        return
    if exchange.method not in STANDARD_METHODS:
        report.other_methods += 1
        return
    # A body cut short cannot be judged, except a stream's: what came of it must
    # be an event stream (a stream cut before its first byte shows nothing).
    event_stream = response.headers.get('content-type', '').startswith('text/event-stream')
    if not response.complete and not (event_stream and response.body):
        report.unchecked += 1
        return
    request = WireRequest(exchange.request)
    try:
        validate(openapi, request, WireResponse(response))
    except (PathNotFound, OperationNotFound):
        report.outside_document += 1
        check_unserved(exchange, report)
        return
    except Exception as error:  # noqa: BLE001 - every validation failure is a finding
        report.mismatches.append(f'{exchange.describe()}: {error.__cause__ or error}')
        return
    report.checked[f'{exchange.method} {request.path}'] += 1


def validate(openapi: OpenAPI, request: WireRequest, response: WireResponse) -> None:
    """As openapi-core does, but a trailing slash is ignored, as the Worker ignores
    it (so `/v1` is the documented `/v1/`)."""
    path = request.path
    for candidate in dict.fromkeys([path, path.rstrip('/') or '/', path + '/']):
        request.path = candidate
        try:
            openapi.validate_response(request, response)
            return
        except (PathNotFound, ServerNotFound):
            continue
        finally:
            request.path = path
    raise PathNotFound(path)


def check_unserved(exchange: Exchange, report: Report) -> None:
    """A route the document does not describe: the exchange's own 404 or 405, or
    the 500 of a deployment with invalid settings (checked before the route)."""
    text = exchange.response.body.decode('utf-8', 'replace')
    plain = exchange.response.headers.get('content-type', '').startswith('text/plain')
    if exchange.status == 404 and plain and text.startswith('No route for '):
        return
    if exchange.status == 500 and plain and text.startswith('Invalid exchange configuration: '):
        return
    allow = exchange.response.headers.get('allow')
    if exchange.status == 405 and plain and allow and text.startswith('Method '):
        return
    report.mismatches.append(f'{exchange.describe()}: not a documented route, yet not 404/405')


class WireRequest:
    """A recorded request, as openapi-core reads one."""

    def __init__(self, request: Message) -> None:
        method, target, _ = request.start_line.split(' ', 2)
        url = urlsplit(target)
        self.method = method.lower()
        self.host_url = 'http://' + request.headers.get('host', '127.0.0.1')
        self.path = url.path
        self.body = request.body or None
        self.content_type = request.headers.get('content-type', '').lower()
        self.parameters = RequestParameters(
            query=ImmutableMultiDict(parse_qsl(url.query, keep_blank_values=True)),
            header=request.headers,
        )


class WireResponse:
    """A recorded response, as openapi-core reads one."""

    def __init__(self, response: Message) -> None:
        self.status_code = int(response.start_line.split(' ')[1])
        self.headers = response.headers
        self.content_type = response.headers.get('content-type', '').lower()
        self.data = response.body


# ------------------------------------------------------------ HTTP/1.1 on the wire


def pair(capture: Capture) -> tuple[list[Exchange], int]:
    """The connection's requests, each with its response (HTTP/1.1 answers in
    order), and how many requests got no response that could be read."""
    requests = list(read_messages(bytes(capture.sent.data), is_request=True))
    exchanges = []
    answered = bytes(capture.answered.data)
    offset = 0
    for request in requests:
        response, offset = read_response(answered, offset, request.start_line.split(' ')[0])
        if response is None:
            break
        if capture.answered.overflowed and not response.complete:
            break
        exchanges.append(Exchange(request, response))
    return exchanges, len(requests) - len(exchanges)


def read_messages(data: bytes, *, is_request: bool):
    offset = 0
    while offset < len(data):
        message, offset = read_message(data, offset, is_request=is_request, method='')
        if message is None:
            return
        yield message


def read_response(data: bytes, offset: int, method: str) -> tuple[Message | None, int]:
    while True:
        message, offset = read_message(data, offset, is_request=False, method=method)
        if message is None or not message.start_line.split(' ')[1].startswith('1'):
            return message, offset
        # An interim 1xx answer: the real one follows.


def read_message(
    data: bytes,
    offset: int,
    *,
    is_request: bool,
    method: str,
) -> tuple[Message | None, int]:
    end = data.find(b'\r\n\r\n', offset)
    if end < 0:
        return None, len(data)
    lines = data[offset:end].decode('latin-1').split('\r\n')
    headers = Headers()
    for line in lines[1:]:
        name, _, value = line.partition(':')
        headers.add(name.strip(), value.strip())
    start = end + 4
    status = None if is_request else int(lines[0].split(' ')[1])
    if not is_request and (method == 'HEAD' or status in (204, 304) or status < 200):
        return Message(lines[0], headers, b'', True), start
    if 'chunked' in headers.get('transfer-encoding', '').lower():
        body, offset, complete = dechunk(data, start)
    elif 'content-length' in headers:
        length = int(headers['content-length'])
        body = data[start : start + length]
        complete = len(body) == length
        offset = start + len(body)
    elif is_request:
        body, offset, complete = b'', start, True
    else:  # the body runs until the connection closes
        body, offset, complete = data[start:], len(data), True
    return Message(lines[0], headers, decode(body, headers, complete), complete), offset


def dechunk(data: bytes, offset: int) -> tuple[bytes, int, bool]:
    body = bytearray()
    while True:
        line_end = data.find(b'\r\n', offset)
        if line_end < 0:
            return bytes(body), len(data), False
        size = int(data[offset:line_end].split(b';')[0], 16)
        offset = line_end + 2
        if size == 0:
            trailers_end = data.find(b'\r\n', offset)
            while trailers_end > offset:  # skip trailer fields
                offset = trailers_end + 2
                trailers_end = data.find(b'\r\n', offset)
            if trailers_end < 0:
                return bytes(body), len(data), False
            return bytes(body), trailers_end + 2, True
        chunk = data[offset : offset + size]
        body += chunk
        if len(chunk) < size:
            return bytes(body), len(data), False
        offset += size + 2


def decode(body: bytes, headers: Headers, complete: bool) -> bytes:
    """The body without its content coding (wrangler dev gzips answers)."""
    coding = headers.get('content-encoding', '').lower().strip()
    if not coding or coding == 'identity' or not body:
        return body
    if coding in ('gzip', 'x-gzip', 'deflate'):
        window = 16 + zlib.MAX_WBITS if 'gzip' in coding else zlib.MAX_WBITS
        inflater = zlib.decompressobj(window)
        return inflater.decompress(body) + (inflater.flush() if complete else b'')
    raise ValueError(f'cannot decode a body in {coding!r}')
