"""One scenario with academy-py 0.1.0's synchronous HTTP client, run by
``test_academy010_client.py`` with the 0.1.0 venv's python (that client cannot
be imported next to academy-py 1.0.0).

Usage: ``python academy010_scenario.py HOST PORT [idle]`` (``idle``: only a
``recv()`` without a timeout on an empty mailbox). Each step's outcome goes
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
from academy.identifier import AgentId
from academy.message import ActionRequest
from academy.message import BaseMessage
from academy.message import PingRequest
from academy.message import ShutdownRequest

# Bound on every call; a recv waits less than this on its own timeout.
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


def dump(message: BaseMessage) -> dict[str, Any]:
    """A message as JSON; an action's result as the value it holds (not pickled
    again) and its exception, if any, as type and text."""
    fields = message.model_dump(mode='json', exclude={'exception', 'result'})
    if hasattr(message, 'result'):
        fields['result'] = message.result
    exception = getattr(message, 'exception', None)
    if exception is not None:
        fields['exception'] = [type(exception).__name__, str(exception)]
    return fields


def bounded(exchange: HttpExchange) -> HttpExchange:
    """The 0.1.0 client has no request timeout of its own: bound every call."""
    session_request = exchange._session.request

    def bounded_request(*args: Any, **kwargs: Any) -> requests.Response:
        kwargs.setdefault('timeout', HTTP_TIMEOUT_S)
        return session_request(*args, **kwargs)

    exchange._session.request = bounded_request  # type: ignore[method-assign]
    return exchange


def idle(host: str, port: int) -> dict[str, Any]:
    with bounded(HttpExchange(host, port)) as exchange:
        cid = exchange.register_client()
        mailbox = exchange.get_mailbox(cid)
        result = {'recv_without_timeout': outcome(mailbox.recv)}
        exchange.terminate(cid)
    return result


def main(host: str, port: int) -> dict[str, Any]:
    # Fresh class names per run, so discovery answers are exactly this run's agents.
    suffix = uuid.uuid4().hex[:8]
    base = type(f'Base{suffix}', (Behavior,), {})
    probe = type(f'Probe{suffix}', (base,), {})

    result: dict[str, Any] = {'mro': list(probe.behavior_mro())}
    with bounded(HttpExchange(host, port)) as exchange:
        aid = exchange.register_agent(probe, name='probe')
        cid = exchange.register_client(name='requester')
        result['agent'] = str(aid.uid)
        result['client'] = str(cid.uid)
        result['discover_exact'] = outcome(
            lambda: uids(exchange.discover(probe, allow_subclasses=False)),
        )
        result['discover_base_with_subclasses'] = outcome(
            lambda: uids(exchange.discover(base, allow_subclasses=True)),
        )
        result['discover_base_exact'] = outcome(
            lambda: uids(exchange.discover(base, allow_subclasses=False)),
        )

        agent_mailbox = exchange.get_mailbox(aid)
        client_mailbox = exchange.get_mailbox(cid)
        result['get_mailbox'] = [
            str(agent_mailbox.mailbox_id.uid),
            str(client_mailbox.mailbox_id.uid),
        ]
        result['get_mailbox_unknown'] = outcome(
            lambda: exchange.get_mailbox(AgentId.new()),
        )

        def recv_at(mailbox: Any) -> dict[str, Any]:
            return outcome(lambda: dump(mailbox.recv(timeout=RECV_TIMEOUT_S)))

        # A ping, received by the agent and answered through the exchange.
        ping = PingRequest(src=cid, dest=aid)
        result['ping'] = dump(ping)
        result['send_ping'] = outcome(lambda: exchange.send(aid, ping))
        result['agent_recv_ping'] = recv_at(agent_mailbox)
        result['send_ping_response'] = outcome(
            lambda: exchange.send(cid, ping.response()),
        )
        result['client_recv_ping_response'] = recv_at(client_mailbox)

        # An action: its pickled arguments and result travel untouched.
        add = ActionRequest(src=cid, dest=aid, action='add', args=(1, 2))
        result['add'] = dump(add)
        result['send_add'] = outcome(lambda: exchange.send(aid, add))
        result['agent_recv_add'] = outcome(
            lambda: list(agent_mailbox.recv(timeout=RECV_TIMEOUT_S).args),
        )
        result['send_add_response'] = outcome(
            lambda: exchange.send(cid, add.response(3)),
        )
        result['client_recv_add_response'] = recv_at(client_mailbox)

        # Requests still in flight when the agent's mailbox is terminated.
        in_flight = {
            'ping': PingRequest(src=cid, dest=aid),
            'action': ActionRequest(src=cid, dest=aid, action='add', args=(4, 5)),
            'shutdown': ShutdownRequest(src=cid, dest=aid),
        }
        result['in_flight_tags'] = {k: str(m.tag) for k, m in in_flight.items()}
        result['send_in_flight'] = [
            outcome(lambda m=m: exchange.send(aid, m)) for m in in_flight.values()
        ]
        result['terminate'] = outcome(lambda: exchange.terminate(aid))
        # Two replies, then nothing: the third recv waits out its own timeout.
        result['client_recv_after_terminate'] = [
            recv_at(client_mailbox) for _ in range(len(in_flight))
        ]

        result['discover_after_terminate'] = outcome(
            lambda: uids(exchange.discover(probe, allow_subclasses=False)),
        )
        result['get_mailbox_after_terminate'] = outcome(
            lambda: str(exchange.get_mailbox(aid).mailbox_id.uid),
        )
        result['send_after_terminate'] = outcome(
            lambda: exchange.send(aid, PingRequest(src=cid, dest=aid)),
        )
        result['recv_after_terminate'] = recv_at(agent_mailbox)
        unknown = AgentId.new()
        result['send_to_unknown'] = outcome(
            lambda: exchange.send(unknown, PingRequest(src=cid, dest=unknown)),
        )
        result['terminate_again'] = outcome(lambda: exchange.terminate(aid))
        exchange.terminate(cid)
    return result


if __name__ == '__main__':
    run = idle if sys.argv[3:] == ['idle'] else main
    print(json.dumps(run(sys.argv[1], int(sys.argv[2]))))
