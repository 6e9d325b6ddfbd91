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

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from harness import REPO
from harness import ExchangeProcess

pytestmark = pytest.mark.worker_only  # academy's 1.0 server knows no `behavior`

PYTHON = REPO / '.venv-academy010' / 'bin' / 'python'
SCENARIO = Path(__file__).with_name('academy010_scenario.py')
SCENARIO_TIMEOUT_S = 90


@pytest.fixture(scope='module')
def outcome(exchange: ExchangeProcess) -> dict[str, Any]:
    assert PYTHON.exists(), f'{PYTHON} is missing: run scripts/bootstrap.sh'
    done = subprocess.run(
        [str(PYTHON), str(SCENARIO), '127.0.0.1', str(exchange.port)],
        capture_output=True,
        text=True,
        timeout=SCENARIO_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_it_registers_an_agent_and_discovers_it_exactly_and_through_its_base(
    outcome: dict[str, Any],
) -> None:
    agent = outcome['agent']
    assert len(outcome['mro']) == 2  # the class and its base: `behavior` is "Probe,Base"
    assert outcome['discover_exact'] == {'ok': [agent]}
    assert outcome['discover_base_with_subclasses'] == {'ok': [agent]}
    assert outcome['discover_base_exact'] == {'ok': []}


def test_it_terminates_and_the_agent_is_no_longer_discovered(
    outcome: dict[str, Any],
) -> None:
    assert outcome['terminate'] == {'ok': None}
    assert outcome['discover_after_terminate'] == {'ok': []}
    assert outcome['terminate_again'] == {'ok': None}


def test_its_messages_are_refused_they_have_no_header(outcome: dict[str, Any]) -> None:
    # 0.1.0 messages are flat ({"tag", "src", "dest", "label", "kind": "ping-request"});
    # the exchange reads the routing fields from {"header": …, "body": …}.
    send = outcome['send']
    assert (send['raised'], send['status']) == ('HTTPError', 400)
    assert send['text'].startswith("Missing or invalid field: 'message'")
    assert 'header' in send['text']
    assert 'header' not in outcome['ping']


def test_get_mailbox_fails_it_expects_exists_not_status(outcome: dict[str, Any]) -> None:
    # HttpMailbox() reads {"exists": …} from GET /mailbox; the answer is {"status": …}.
    assert outcome['get_mailbox'] == {
        'raised': 'KeyError',
        'status': None,
        'text': "'exists'",
    }


def test_recv_times_out_and_reports_a_terminated_mailbox_as_419_not_closed(
    outcome: dict[str, Any],
) -> None:
    # Nothing could be sent, so recv waits until the client's own timeout.
    assert outcome['recv']['raised'] == 'TimeoutError'
    # The client maps 403 to MailboxClosedError; a terminated mailbox answers 419,
    # which it raises as a plain HTTP error.
    assert outcome['recv_after_terminate'] == {
        'raised': 'HTTPError',
        'status': 419,
        'text': 'Mailbox was closed',
    }


def test_register_client_is_refused_its_role_is_client_not_user(
    outcome: dict[str, Any],
) -> None:
    register = outcome['register_client']
    assert (register['raised'], register['status']) == ('HTTPError', 400)
    assert register['text'].startswith("Missing or invalid field: 'mailbox'")
    assert 'client' in register['text']
