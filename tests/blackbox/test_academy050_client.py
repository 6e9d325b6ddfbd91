"""academy-py 0.5.0's client against the exchange, and the heartbeats the exchange
stamps for it.

0.5 clients never send ``POST /mailbox/heartbeat``: academy-py 0.5's server
stamped a mailbox's heartbeat whenever its client sent, received or opened a
listen stream. The exchange does the same for requests without the
``academy_version`` header (which every academy-py 1.0 request carries).

That client shares its package name with academy-py 1.0.0, so it lives in its own
venv (``.venv-academy050``, made by ``scripts/bootstrap.sh``) and runs
``academy050_scenario.py`` as a subprocess; the first tests assert on the outcome
of each step it prints. The rest speak raw HTTP with and without the header.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from harness import REPO
from harness import Api
from harness import ExchangeProcess
from harness import costs
from harness import make_message
from harness import past_record_writes
from harness import scenario_outcome

# academy's 1.0 server stamps no heartbeat on sends, receives or listens.
pytestmark = pytest.mark.worker_only

PYTHON = REPO / '.venv-academy050' / 'bin' / 'python'
SCENARIO = Path(__file__).with_name('academy050_scenario.py')
SCENARIO_TIMEOUT_S = 120
# The scenario's pause between two sends (its AGEING_S).
AGEING_S = 0.6

# A client as academy-py 0.5 is: without the academy_version header.
WITHOUT_VERSION = {'academy_version': None}


@pytest.fixture(scope='module')
def outcome(exchange: ExchangeProcess) -> dict[str, Any]:
    return scenario_outcome(PYTHON, SCENARIO, exchange.url, timeout=SCENARIO_TIMEOUT_S)


def is_age(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0


def test_a_user_calls_actions_on_an_agent_the_manager_launched(
    outcome: dict[str, Any],
) -> None:
    assert outcome['echo'] == {'ok': {'nested': [1, 2.5, None, 'é']}}
    assert outcome['add'] == [{'ok': 2}, {'ok': 5}]
    assert is_age(outcome['ping']['ok']), outcome['ping']
    assert outcome['shutdown'] == {'ok': None}


def test_status_reads_active_missing_and_terminated(outcome: dict[str, Any]) -> None:
    assert outcome['status_agent'] == {'ok': 'ACTIVE'}
    assert outcome['status_user'] == {'ok': 'ACTIVE'}
    assert outcome['status_unknown'] == {'ok': 'MISSING'}
    assert outcome['status_agent_after_shutdown'] == {'ok': 'TERMINATED'}
    assert outcome['status_user_after_close'] == {'ok': 'TERMINATED'}


def test_a_running_agent_and_its_user_have_heartbeats_without_sending_any(
    outcome: dict[str, Any],
) -> None:
    # The agent listens and answers; the user sends requests and listens.
    assert is_age(outcome['heartbeat_agent']['ok']), outcome['heartbeat_agent']
    assert is_age(outcome['heartbeat_user']['ok']), outcome['heartbeat_user']
    # A terminated mailbox has none (419, which the client raises).
    assert outcome['heartbeat_agent_after_shutdown']['raised'] == 'AgentTerminatedError'


def test_a_send_stamps_the_senders_heartbeat_and_the_next_send_renews_it(
    outcome: dict[str, Any],
) -> None:
    quiet = outcome['quiet_client']
    assert quiet['before_any_send'] == {'ok': None}
    assert quiet['send'] == {'ok': None}
    assert is_age(quiet['after_send']['ok']), quiet
    aged = quiet['aged']['ok']
    assert aged >= AGEING_S - 0.1, quiet
    assert quiet['send_again'] == {'ok': None}
    assert 0 <= quiet['after_send_again']['ok'] < aged, quiet


def test_opening_a_listen_stream_stamps_the_heartbeat(outcome: dict[str, Any]) -> None:
    listener = outcome['listener']
    assert listener['before_listen'] == {'ok': None}
    assert is_age(listener['while_listening']['ok']), listener


# ----------------------------------------------------------- raw HTTP, 0.5 vs 1.0


def heartbeat(api: Api, mailbox: str) -> Any:
    r = api.get_heartbeat(mailbox)
    assert r.status_code == 200, r.text
    return r.json()['heartbeat']


def test_a_receive_without_the_version_header_stamps_the_heartbeat(api: Api) -> None:
    legacy = Api(api.url, headers=WITHOUT_VERSION)
    src, dest = api.new_mailbox(), api.new_mailbox()
    assert api.send(make_message(src, dest)).status_code == 200
    api.recv_message(dest)  # with the header: no stamp
    assert heartbeat(api, dest) is None
    assert api.send(make_message(src, dest)).status_code == 200
    legacy.recv_message(dest)
    assert is_age(heartbeat(api, dest))
    # A receive that waits in vain stamps too.
    other = api.new_mailbox()
    assert legacy.recv(other, 0.2).status_code == 408
    assert is_age(heartbeat(api, other))


def test_sends_receives_and_listens_with_the_version_header_stamp_nothing(
    api: Api,
) -> None:
    src, dest = api.new_mailbox(), api.new_mailbox()
    assert api.send(make_message(src, dest)).status_code == 200
    assert api.send(make_message(src, src)).status_code == 200
    api.recv_message(dest)
    stream = api.listen(dest, 1, read_timeout=10)
    assert stream.status_code == 200, stream.text
    stream.close()
    assert heartbeat(api, src) is None
    assert heartbeat(api, dest) is None


def test_a_send_without_the_version_header_stamps_the_sender_not_the_destination(
    api: Api,
) -> None:
    legacy = Api(api.url, headers=WITHOUT_VERSION)
    src, dest = api.new_mailbox(), api.new_mailbox()
    assert legacy.send(make_message(src, dest)).status_code == 200
    assert is_age(heartbeat(api, src))
    assert heartbeat(api, dest) is None
    # A response that answers no request still stamps its sender.
    responder = api.new_mailbox()
    assert legacy.send(make_message(responder, dest, kind='response')).status_code == 200
    assert is_age(heartbeat(api, responder))
    # So does a message to its own mailbox (one object call does both).
    own = api.new_mailbox()
    assert legacy.send(make_message(own, own)).status_code == 200
    assert is_age(heartbeat(api, own))


def test_the_heartbeat_of_a_0_5_send_rides_on_the_senders_bookkeeping_write(
    exchange_factory: Callable[..., ExchangeProcess],
) -> None:
    proc = exchange_factory(vars={'EXCHANGE_COST_HEADERS': 1})
    api = Api(proc.url)
    legacy = Api(proc.url, headers=WITHOUT_VERSION)
    src, dest = api.new_mailbox(), api.new_mailbox()
    # The message (also the request in flight), the sender's counters (and
    # stamp); the first arrival also moves the destination's alarm.
    for client, rows in ((api, 3), (legacy, 2)):
        past_record_writes()  # so the send writes the sender's record itself
        sent = client.send(make_message(src, dest, kind='request'))
        assert sent.status_code == 200, sent.text
        assert costs(sent) == (2, rows)
    assert costs(api.recv(dest, 5)) == (1, 1)
    # A 0.5 receive writes its stamp too: one more row, in the same call.
    got = legacy.recv(dest, 5)
    assert got.status_code == 200, got.text
    assert costs(got) == (1, 2)
    assert is_age(heartbeat(api, src))


def test_a_listen_stream_without_the_version_header_stamps_when_it_opens(
    api: Api,
) -> None:
    legacy = Api(api.url, headers=WITHOUT_VERSION)
    mailbox = api.new_mailbox()
    assert heartbeat(api, mailbox) is None
    stream = legacy.listen(mailbox, 1, read_timeout=10)
    assert stream.status_code == 200, stream.text
    stream.close()
    assert is_age(heartbeat(api, mailbox))
