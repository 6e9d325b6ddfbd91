"""The Worker's [vars] change its limits (run on a private worker)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time

import pytest

from harness import REPO
from harness import Api
from harness import ExchangeProcess
from harness import RECORD_WRITE_INTERVAL_S
from harness import costs
from harness import make_message
from harness import new_id
from harness import past_record_writes

pytestmark = pytest.mark.worker_only  # upstream is configured by TOML, not vars


@pytest.fixture
def small_api(exchange_factory) -> Api:
    proc = exchange_factory(vars={'LISTEN_TIMEOUT_S': 5, 'MESSAGE_SIZE_LIMIT_KB': 1})
    return Api(proc.url)


def test_vars_set_the_listen_timeout_and_size_limit(small_api: Api) -> None:
    api = small_api
    src = api.new_mailbox()
    dest = api.new_mailbox()

    r = api.recv(dest, 6)
    assert r.status_code == 400, r.text
    assert r.text.startswith('Invalid timeout'), r.text
    r = api.listen(dest, 6)
    assert r.status_code == 400, r.text
    r.close()
    assert api.recv(dest, 5).status_code == 408

    small = make_message(src, dest, body='{"x": "' + 'a' * 200 + '"}')
    assert len(small.encode()) < 1024
    assert api.send(small).status_code == 200
    big = make_message(src, dest, body='{"x": "' + 'a' * 2048 + '"}')
    r = api.send(big)
    assert r.status_code == 413, r.text
    m = re.fullmatch(r'Message of size (\d+) larger than limit (\d+)\.', r.text)
    assert m and int(m.group(2)) == 1024 and int(m.group(1)) > 1024, r.text


def test_an_invalid_setting_fails_every_request_naming_the_variable(
    exchange_factory,
) -> None:
    proc = exchange_factory(vars={'LISTEN_TIMEOUT_S': 'soon'})
    api = Api(proc.url)
    r = api.status(new_id())
    assert r.status_code == 500, r.text
    assert r.text.startswith('Invalid exchange configuration: LISTEN_TIMEOUT_S'), r.text
    assert '"soon"' in r.text, r.text


def test_cost_headers_count_object_calls_and_rows_written(exchange_factory) -> None:
    proc = exchange_factory(vars={'EXCHANGE_COST_HEADERS': 1})
    api = Api(proc.url)
    src = api.new_mailbox()
    dest = api.new_mailbox()
    past_record_writes()

    sent = api.send(make_message(src, dest, kind='request'))
    written = time.monotonic()
    assert sent.status_code == 200, sent.text
    # Queued at the destination, counted as outgoing at the sender: two objects.
    # Rows: the message (which is also the request's in-flight record), the
    # sender's counters (its record was last written over a second ago), and
    # the destination's alarm, moved to its queue's expiry by the first arrival
    # (setting an alarm is billed as a row written).
    assert costs(sent) == (2, 3)

    got = api.recv(dest, 5)
    assert got.status_code == 200, got.text
    # The request's row is kept, marked taken, while it is in flight.
    assert costs(got) == (1, 1)

    # To its own mailbox, the sender's bookkeeping rides in the same object call;
    # its count comes within a second of the record's last write, so it is
    # staged (written by a timer, in no answer's costs). The message's row, and
    # the first arrival's alarm.
    to_self = api.send(make_message(src, src, kind='request'))
    staged = time.monotonic() - written < RECORD_WRITE_INTERVAL_S
    assert to_self.status_code == 200, to_self.text
    assert costs(to_self) == (1, 2 if staged else 3)
    assert api.stats_value(src)['outgoing'] == 2


def test_a_request_is_its_own_in_flight_record_through_its_answer(
    exchange_factory,
) -> None:
    proc = exchange_factory(vars={'EXCHANGE_COST_HEADERS': 1})
    api = Api(proc.url)
    user = api.new_mailbox()
    agent = api.new_mailbox('agent', agent='mod.Agent')
    request = make_message(user, agent, kind='request')
    tag = json.loads(request)['header']['tag']
    past_record_writes()

    # Queued and in flight in one row; the sender counts it: 2 rows (were 3).
    # (The agent's alarm rings sooner than the queue's expiry already: its
    # creation set it to retry its discovery listing, should that fail.)
    assert costs(api.send(request)) == (2, 2)
    assert api.stats_value(agent)['queued'] == 1
    # Taken: the same row, now neither queued nor replayable, still in flight.
    got = api.recv(agent, 5)
    assert json.loads(got.text)['message'] == request
    assert costs(got) == (1, 1)
    taken = api.stats_value(agent)
    assert (taken['queued'], taken['in_progress']) == (0, 1)
    # The answer: queued at the user (the user's first arrival: its alarm
    # too), the taken row deleted and the agent's counters saved at the agent.
    answer = make_message(agent, user, kind='response', tag=tag)
    assert costs(api.send(answer)) == (2, 4)
    after = api.stats_value(agent)
    assert (after['completed'], after['in_progress'], after['incoming']) == (1, 0, 1)
    # A response is in flight nowhere: its receive deletes its row.
    assert costs(api.recv(user, 5)) == (1, 1)


def test_cost_headers_are_on_error_answers_too(exchange_factory) -> None:
    proc = exchange_factory(vars={'EXCHANGE_COST_HEADERS': 1})
    api = Api(proc.url)
    missing = api.recv(new_id(), 1)
    assert missing.status_code == 404, missing.text
    # Looking at a mailbox that was never created writes nothing.
    assert costs(missing) == (1, 0)
    bad = api.request('PUT', '/message', data=b'not json')
    assert bad.status_code == 400, bad.text
    assert bad.headers['x-exchange-object-calls'] == '0'


def test_cost_headers_are_off_by_default(exchange) -> None:
    api = Api(exchange.url)
    r = api.status(new_id())
    assert 'x-exchange-object-calls' not in r.headers


def test_a_deployment_that_chose_no_auth_method_answers_only_the_configuration_error(
    exchange_factory,
) -> None:
    # As `wrangler deploy` publishes wrangler.toml: no AUTH_METHOD at all.
    proc = exchange_factory(vars={'AUTH_METHOD': None})
    api = Api(proc.url)
    mailbox = new_id('agent')
    answers = [
        api.create(mailbox, agent='m.A'),
        api.status(mailbox),
        api.send(make_message(new_id(), mailbox)),
        api.recv(mailbox, 1),
        api.request('GET', '/discover', json={'agent': 'm.A', 'allow_subclasses': True}),
        api.request('GET', '/no/such/route'),
    ]
    for r in answers:
        assert r.status_code == 500, r.text
        assert r.text.startswith(
            'Invalid exchange configuration: AUTH_METHOD must be set to one of '
            'none, globus, token, access',
        ), r.text
    # Logged too, as the request's cause (wrangler passes the Worker's console on a
    # moment later).
    deadline = time.monotonic() + 10
    while not any(
        record['error'] == 'configuration'
        and record['cause'].startswith('AUTH_METHOD must be set')
        for record in proc.request_log()
    ):
        assert time.monotonic() < deadline, proc.log_tail()
        time.sleep(0.2)


def test_the_deploy_build_publishes_no_auth_method(tmp_path) -> None:
    env = dict(
        os.environ,
        EXCHANGE_SKIP_BUILD='1',
        CLOUDFLARE_CF_FETCH_ENABLED='false',
        WRANGLER_SEND_METRICS='false',
        NO_COLOR='1',
        CI='true',
    )
    done = subprocess.run(
        [
            str(REPO / 'node_modules' / '.bin' / 'wrangler'),
            'deploy',
            '--dry-run',
            '--outdir',
            str(tmp_path / 'out'),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert '--dry-run: exiting now.' in output, output
    # The bindings it lists are what a deployment gets: the objects and the limits,
    # and no authentication method (so the Worker refuses to serve until one is set).
    assert 'env.MAILBOX' in output and 'env.LISTEN_TIMEOUT_S' in output, output
    assert 'AUTH_METHOD' not in output, output


def test_the_dev_script_serves_locally_without_authentication(tmp_path) -> None:
    proc = ExchangeProcess('dev-script', log_dir=tmp_path / 'dev-log')
    try:
        proc.start()
        api = Api(proc.url)
        mailbox = api.new_mailbox()
        assert api.status(mailbox).json() == {'status': 'ACTIVE', 'exists': True}
    finally:
        proc.cleanup()
