"""One scenario with academy-py 0.1.0's synchronous HTTP client, run by
``test_academy010_client.py`` with the 0.1.0 venv's python (that client cannot
be imported next to academy-py 1.0.0).

Usage: ``python academy010_scenario.py HOST PORT``. Each step's outcome goes
into one JSON object on stdout: ``{"ok": <value>}`` when the client call
returned, ``{"raised": <exception type>, "status": <HTTP status or null>,
"text": <response text or the exception's message>}`` when it raised. The test
asserts on those outcomes, so what this client can and cannot do is pinned.
"""

from __future__ import annotations

import json
import sys
import uuid
from typing import Any
from typing import Callable

import requests
from academy.behavior import Behavior
from academy.exchange.http import HttpExchange
from academy.exchange.http import HttpMailbox
from academy.identifier import AgentId
from academy.message import PingRequest

# Bound on every call; the recv below waits less than this on its own timeout.
HTTP_TIMEOUT_S = 20
RECV_TIMEOUT_S = 3


def outcome(call: Callable[[], Any]) -> dict[str, Any]:
    try:
        return {'ok': call()}
    except Exception as error:  # noqa: BLE001 - every failure is the result
        response = getattr(error, 'response', None)
        return {
            'raised': type(error).__name__,
            'status': None if response is None else response.status_code,
            'text': str(error) if response is None else response.text,
        }


def uids(agent_ids: tuple[AgentId[Any], ...]) -> list[str]:
    return [str(aid.uid) for aid in agent_ids]


def main(host: str, port: int) -> dict[str, Any]:
    # Fresh class names per run, so discovery answers are exactly this run's agents.
    suffix = uuid.uuid4().hex[:8]
    base = type(f'Base{suffix}', (Behavior,), {})
    probe = type(f'Probe{suffix}', (base,), {})
    sender_behavior = type(f'Sender{suffix}', (Behavior,), {})

    result: dict[str, Any] = {'mro': list(probe.behavior_mro())}
    with HttpExchange(host, port) as exchange:
        # The 0.1.0 client has no request timeout of its own: bound every call.
        session_request = exchange._session.request

        def bounded_request(*args: Any, **kwargs: Any) -> requests.Response:
            kwargs.setdefault('timeout', HTTP_TIMEOUT_S)
            return session_request(*args, **kwargs)

        exchange._session.request = bounded_request  # type: ignore[method-assign]

        aid = exchange.register_agent(probe, name='probe')
        sender = exchange.register_agent(sender_behavior)
        result['agent'] = str(aid.uid)
        result['discover_exact'] = outcome(
            lambda: uids(exchange.discover(probe, allow_subclasses=False)),
        )
        result['discover_base_with_subclasses'] = outcome(
            lambda: uids(exchange.discover(base, allow_subclasses=True)),
        )
        result['discover_base_exact'] = outcome(
            lambda: uids(exchange.discover(base, allow_subclasses=False)),
        )
        result['register_client'] = outcome(
            lambda: str(exchange.register_client().uid),
        )

        ping = PingRequest(src=sender, dest=aid)
        result['send'] = outcome(lambda: exchange.send(aid, ping))
        result['get_mailbox'] = outcome(
            lambda: str(exchange.get_mailbox(aid).mailbox_id.uid),
        )
        # get_mailbox's existence check aside, what its recv sees: the same
        # object get_mailbox would return, built without that check.
        mailbox = HttpMailbox.__new__(HttpMailbox)
        mailbox._uid = aid
        mailbox._exchange = exchange
        result['recv'] = outcome(
            lambda: mailbox.recv(timeout=RECV_TIMEOUT_S).model_dump(mode='json'),
        )
        result['ping'] = ping.model_dump(mode='json')

        result['terminate'] = outcome(lambda: exchange.terminate(aid))
        result['discover_after_terminate'] = outcome(
            lambda: uids(exchange.discover(probe, allow_subclasses=False)),
        )
        result['recv_after_terminate'] = outcome(
            lambda: mailbox.recv(timeout=RECV_TIMEOUT_S),
        )
        result['terminate_again'] = outcome(lambda: exchange.terminate(aid))
        exchange.terminate(sender)
    return result


if __name__ == '__main__':
    print(json.dumps(main(sys.argv[1], int(sys.argv[2]))))
