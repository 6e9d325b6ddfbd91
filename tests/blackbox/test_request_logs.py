"""The Worker's request log: one JSON line per request, read back from what
``wrangler dev`` printed (README "Logs"). Runs a private worker with static-token
authentication, so that credentials travel in every request."""

from __future__ import annotations

import json
import re
import time
import uuid
from typing import Any

import pytest

from harness import Api
from harness import ExchangeProcess
from harness import make_message
from harness import new_id
from harness import past_record_writes
from harness import uid_of

pytestmark = pytest.mark.worker_only  # the log is the Worker's

TOKEN = f'tok-{uuid.uuid4()}'
WRONG_TOKEN = f'tok-{uuid.uuid4()}'
BODY_SECRET = f'body-{uuid.uuid4()}'
FIELDS = {
    'route', 'method', 'status', 'mailbox', 'duration_ms', 'object_calls',
    'rows_written', 'error', 'cause', 'reason',
}
LOG_WAIT_S = 10  # wrangler passes the Worker's console on a moment later


def is_readiness_probe(record: dict[str, Any]) -> bool:
    """The harness's start-up probe: GET /mailbox without credentials."""
    return record['route'] == 'status' and record['status'] == 401


def records_after(proc: ExchangeProcess, count: int) -> list[dict[str, Any]]:
    """The request log without the start-up probes, once it holds `count` records."""
    deadline = time.monotonic() + LOG_WAIT_S
    while True:
        records = [r for r in proc.request_log() if not is_readiness_probe(r)]
        if len(records) >= count or time.monotonic() > deadline:
            return records
        time.sleep(0.2)


@pytest.fixture
def token_worker(exchange_factory) -> ExchangeProcess:
    tokens = {TOKEN: {'client_id': 'alice@example.org'}}
    return exchange_factory(
        vars={'AUTH_METHOD': 'token', 'EXCHANGE_TOKENS': json.dumps(tokens)},
    )


def test_every_request_writes_one_line_with_its_route_outcome_and_costs(
    token_worker: ExchangeProcess,
) -> None:
    api = Api(token_worker.url, headers={'Authorization': f'Bearer {TOKEN}'})
    src = api.new_mailbox()
    dest = api.new_mailbox('agent', agent='mod.Agent')
    past_record_writes()  # so the send writes the sender's count itself
    body = json.dumps({'kind': 'action-request', 'args': BODY_SECRET})
    assert api.send(make_message(src, dest, body=body)).status_code == 200
    assert json.loads(api.recv_message(dest))['body']['args'] == BODY_SECRET
    unknown = new_id()
    assert api.recv(unknown, 1).status_code == 404
    assert api.request('PUT', '/message', data=b'not json').status_code == 400
    refused = api.request(
        'POST', '/mailbox/heartbeat', json={'mailbox': dest},
        headers={'Authorization': f'Bearer {WRONG_TOKEN}'},
    )
    assert refused.status_code == 403, refused.text
    anonymous = api.request('PUT', '/message', json={}, headers={'Authorization': None})
    assert anonymous.status_code == 401, anonymous.text
    secret_query = f'q-{uuid.uuid4()}'
    assert api.request('GET', f'/nowhere?token={secret_query}').status_code == 404
    stream = api.listen(dest, 1)
    assert stream.status_code == 200
    stream.close()

    # (route, status, mailbox uid, error) of each request above, in order.
    expected = [
        ('create_mailbox', 200, uid_of(src), None),
        ('create_mailbox', 200, uid_of(dest), None),
        ('send', 200, uid_of(dest), None),
        ('receive', 200, uid_of(dest), None),
        ('receive', 404, uid_of(unknown), 'unknown_mailbox'),
        ('send', 400, None, 'invalid_body'),
        ('heartbeat', 403, None, 'token_rejected'),
        ('send', 401, None, 'unauthorized'),
        (None, 404, None, 'unknown_route'),
        ('listen', 200, uid_of(dest), None),
    ]
    records = records_after(token_worker, len(expected))
    assert [
        (r['route'], r['status'], r['mailbox'], r['error']) for r in records
    ] == expected, records
    for record in records:
        assert set(record) == FIELDS, record
        assert isinstance(record['duration_ms'], int) and record['duration_ms'] >= 0
        assert record['cause'] is None, record  # no server fault here
        assert (record['reason'] is None) == (record['error'] is None), record
    create, agent, send, recv, missing, bad, wrong, anon, nowhere, listen = records
    assert create['method'] == 'POST' and create['object_calls'] == 1
    # An agent is also listed in its class's directory: a second object.
    assert agent['object_calls'] == 2
    # Queued at the destination, counted as outgoing at the sender.
    assert (send['object_calls'], send['rows_written']) == (2, 2)
    assert recv['object_calls'] == 1
    assert missing['reason'] == 'Unknown mailbox ID'
    assert bad['object_calls'] == 0 and bad['reason'].startswith('Invalid request body')
    assert wrong['reason'] == 'unknown token'
    assert anon['reason'] == 'Missing required headers.'
    assert nowhere['method'] == 'GET' and secret_query not in json.dumps(nowhere)
    assert listen['object_calls'] == 1  # logged when the stream starts

    # Neither credential nor message body is anywhere in what the Worker printed.
    printed = token_worker.output()
    for secret in (TOKEN, WRONG_TOKEN, BODY_SECRET):
        assert secret not in printed


def test_a_server_fault_is_logged_as_an_error_with_its_cause(exchange_factory) -> None:
    proc = exchange_factory(vars={'LISTEN_TIMEOUT_S': 'soon'})
    mailbox = new_id()
    assert Api(proc.url).status(mailbox).status_code == 500
    deadline = time.monotonic() + LOG_WAIT_S
    while not (faults := [r for r in proc.request_log() if r['status'] == 500]):
        assert time.monotonic() < deadline, proc.log_tail()
        time.sleep(0.2)
    fault = faults[-1]
    assert fault['error'] == 'configuration'
    assert fault['cause'].startswith('LISTEN_TIMEOUT_S must be a number of seconds'), fault
    assert fault['reason'] is None
    # The settings are read before the route: nothing else is known yet.
    assert (fault['route'], fault['mailbox'], fault['object_calls']) == (None, None, 0)
    # Written with console.error, which wrangler marks as an error (in colour).
    line = next(line for line in proc.output().splitlines() if '"status":500' in line)
    assert '[ERROR]' in re.sub(r'\x1b\[[0-9;]*m', '', line), line
