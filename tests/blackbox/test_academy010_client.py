"""academy-py 0.1.0's synchronous HTTP client (``academy.exchange.http.HttpExchange``)
against the exchange.

That client shares its package name with academy-py 1.0.0, so it lives in its own
venv (``.venv-academy010``, made by ``scripts/bootstrap.sh``) and runs
``academy010_scenario.py`` as a subprocess; these tests assert on the outcome of
each step it prints. What works and what does not is pinned here and listed in the
README ("Clients"): where the client expects something this exchange answers
differently, the test asserts what the client sees today.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from harness import REPO
from harness import ExchangeProcess
from harness import scenario_outcome

pytestmark = pytest.mark.worker_only  # academy's 1.0 server knows no 0.1.0 client

PYTHON = REPO / '.venv-academy010' / 'bin' / 'python'
SCENARIO = Path(__file__).with_name('academy010_scenario.py')
SCENARIO_TIMEOUT_S = 90


def run_scenario(exchange: ExchangeProcess, *args: str) -> dict[str, Any]:
    return scenario_outcome(
        PYTHON,
        SCENARIO,
        '127.0.0.1',
        str(exchange.port),
        *args,
        timeout=SCENARIO_TIMEOUT_S,
    )


@pytest.fixture(scope='module')
def outcome(exchange: ExchangeProcess) -> dict[str, Any]:
    return run_scenario(exchange)


def test_it_registers_an_agent_and_discovers_it_exactly_and_through_its_base(
    outcome: dict[str, Any],
) -> None:
    agent = outcome['agent']
    assert len(outcome['mro']) == 2  # the class and its base: `behavior` is "Probe,Base"
    assert outcome['discover_exact'] == {'ok': [agent]}
    assert outcome['discover_base_with_subclasses'] == {'ok': [agent]}
    assert outcome['discover_base_exact'] == {'ok': []}


def test_it_registers_a_client_and_opens_both_mailboxes(outcome: dict[str, Any]) -> None:
    # A 0.1.0 client id has the role "client"; get_mailbox reads `exists`.
    assert outcome['get_mailbox'] == [outcome['agent'], outcome['client']]
    unknown = outcome['get_mailbox_unknown']
    assert unknown['raised'] == 'BadEntityIdError'
    assert unknown['text'].startswith('Unknown identifier AgentID<')


def test_a_ping_is_sent_received_as_sent_and_answered(outcome: dict[str, Any]) -> None:
    ping = outcome['ping']
    assert ping['kind'] == 'ping-request' and 'header' not in ping  # the flat layout
    assert ping['src']['role'] == 'client'
    assert outcome['send_ping'] == {'ok': None}
    assert outcome['agent_recv_ping'] == {'ok': ping}
    assert outcome['send_ping_response'] == {'ok': None}
    assert outcome['client_recv_ping_response'] == {
        'ok': {
            'tag': ping['tag'],
            'src': ping['dest'],
            'dest': ping['src'],
            'label': None,
            'kind': 'ping-response',
        },
    }


def test_an_action_travels_with_its_pickled_arguments_and_result(
    outcome: dict[str, Any],
) -> None:
    add = outcome['add']
    assert outcome['send_add'] == {'ok': None}
    assert outcome['agent_recv_add'] == {'ok': [1, 2]}
    assert outcome['send_add_response'] == {'ok': None}
    response = outcome['client_recv_add_response']['ok']
    assert (response['kind'], response['tag']) == ('action-response', add['tag'])
    assert (response['action'], response['result']) == ('add', 3)
    assert 'exception' not in response


def test_terminate_answers_its_requests_in_flight_with_mailbox_closed_in_their_layout(
    outcome: dict[str, Any],
) -> None:
    assert outcome['send_in_flight'] == [{'ok': None}] * 3
    assert outcome['terminate'] == {'ok': None}
    tags = outcome['in_flight_tags']
    *replies, nothing = outcome['client_recv_after_terminate']
    closed = ['MailboxClosedError', 'Mailbox for AgentID<probe> has been closed.']
    by_kind = {reply['ok']['kind']: reply['ok'] for reply in replies}
    assert sorted(by_kind) == ['action-response', 'ping-response']
    assert by_kind['ping-response']['tag'] == tags['ping']
    assert by_kind['ping-response']['exception'] == closed
    assert by_kind['action-response']['tag'] == tags['action']
    assert by_kind['action-response']['action'] == 'add'
    assert by_kind['action-response']['exception'] == closed
    for reply in replies:
        assert reply['ok']['src']['uid'] == outcome['agent']
        assert reply['ok']['dest']['role'] == 'client'
    # No reply to the shutdown request: 0.1.0 agents never answer one either.
    assert nothing['raised'] == 'TimeoutError'


def test_it_terminates_and_the_agent_is_no_longer_discovered(
    outcome: dict[str, Any],
) -> None:
    assert outcome['discover_after_terminate'] == {'ok': []}
    assert outcome['terminate_again'] == {'ok': None}
    # As 0.1.0's own server: a terminated mailbox still exists.
    assert outcome['get_mailbox_after_terminate'] == {'ok': outcome['agent']}
    unknown = outcome['send_to_unknown']
    assert unknown['raised'] == 'BadEntityIdError'


def test_a_terminated_mailbox_answers_419_which_it_raises_as_a_plain_http_error(
    outcome: dict[str, Any],
) -> None:
    # The client maps 403 (what its own server answered) to MailboxClosedError; the
    # exchange answers 419, as academy-py 0.5 and 1.0 expect, so it raises HTTPError.
    closed = {'raised': 'HTTPError', 'status': 419, 'text': 'Mailbox was closed'}
    assert outcome['send_after_terminate'] == closed
    assert outcome['recv_after_terminate'] == closed


def test_a_recv_without_timeout_ends_in_408_which_it_raises_as_a_plain_http_error(
    exchange_factory: Callable[..., ExchangeProcess],
) -> None:
    # 0.1.0's recv() without a timeout (how its agents and handles listen) expects
    # to wait for ever. The exchange ends a long poll after LISTEN_TIMEOUT_S (60 s
    # by default; 1 s here) with 408, which that client raises: its listener dies.
    proc = exchange_factory(vars={'LISTEN_TIMEOUT_S': '1'})
    assert run_scenario(proc, 'idle') == {
        'recv_without_timeout': {
            'raised': 'HTTPError',
            'status': 408,
            'text': 'Request timeout',
        },
    }
