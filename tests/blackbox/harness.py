"""Black-box harness: start an exchange process and talk raw HTTP to it.

Two targets, chosen with the ``EXCHANGE_TARGET`` environment variable:

* ``worker`` (default): the Rust Worker under ``wrangler dev`` (run from the
  repository root, with ``EXCHANGE_SKIP_BUILD=1`` so it is not rebuilt).
* ``upstream``: academy-py's own exchange server
  (``python -m academy.exchange.cloud``) with the in-memory backend; the
  reference the tests are validated against.

``WorkerdDirectProcess`` serves the built Worker from workerd without the
``wrangler dev`` proxy, for the benchmark and for tests that must see exactly
what workerd answers.

``EXCHANGE_CHECK_OPENAPI=1`` (``scripts/test.sh`` sets it): every Worker started
under ``wrangler dev`` is reached through a ``RecordingProxy``, and the session
ends by checking every answer it recorded against ``docs/openapi.json``
(``openapi_check``, run from ``conftest.py``).

Nothing here kills a process it did not start: every process is started in a
new session and stopped through its own process group.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Any

import requests

from recording_proxy import RecordingProxy
from recording_proxy import TrafficLog

REPO = Path(__file__).resolve().parents[2]
TARGET = os.environ.get('EXCHANGE_TARGET', 'worker').strip().lower() or 'worker'
if TARGET not in ('worker', 'upstream'):
    raise RuntimeError(
        f'EXCHANGE_TARGET must be "worker" or "upstream", not {TARGET!r}',
    )

# The document describes the Worker, not academy's server.
CHECK_OPENAPI = TARGET == 'worker' and os.environ.get('EXCHANGE_CHECK_OPENAPI') == '1'
# What every recording proxy of this process saw.
TRAFFIC = TrafficLog()

# Defaults both targets are started with (upstream: listen_timeout_s = 60,
# message_size_limit_kb = 512).
LISTEN_TIMEOUT_S = 60
MESSAGE_SIZE_LIMIT = 512 * 1024

# The academy_version header academy-py 1.0.0 sends with every request.
ACADEMY_VERSION = '1.0.0'

# Bound on every plain HTTP call the tests make (long polls add their own wait).
HTTP_TIMEOUT = 30
READY_TIMEOUT_S = 60
STOP_GRACE_S = 10

_LIVE: set[ExchangeProcess] = set()


def free_port() -> int:
    """Pick a free TCP port on 127.0.0.1 (bind to port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _tail(path: Path, limit: int = 6000) -> str:
    try:
        data = path.read_bytes()
    except OSError as e:  # pragma: no cover - diagnostics only
        return f'<no log: {e}>'
    return data[-limit:].decode('utf-8', 'replace')


def academy_config(port: int, backend: list[str]) -> str:
    """academy's server config: 127.0.0.1:``port``, the given ``[backend]`` lines."""
    return '\n'.join(
        [
            'host = "127.0.0.1"',
            f'port = {port}',
            f'listen_timeout_s = {LISTEN_TIMEOUT_S}',
            '',
            '[backend]',
            *backend,
            '',
            '[logger]',
            'level = "WARNING"',
            '',
        ],
    )


class ExchangeProcess:
    """One exchange server process on a free 127.0.0.1 port.

    Args:
        target: ``worker`` or ``upstream`` (default: ``EXCHANGE_TARGET``), or
            ``dev-script``: the Worker started by ``scripts/dev.sh`` itself.
        persist_dir: Worker only: the ``--persist-to`` directory, so a test
            can stop the worker and start it again on the same storage.
            A fresh temporary directory when omitted.
        vars: Worker only: extra ``--var K:V`` settings (override the
            defaults ``SSE_KEEPALIVE_S=1``, ``LISTEN_TIMEOUT_S=60`` and
            ``AUTH_METHOD=none``; a value of None leaves that setting unset,
            as a deployment that never chose it).
        log_dir: Where the output log goes (a temporary directory if None).
    """

    # Whether its traffic goes through a recording proxy when CHECK_OPENAPI is set.
    recorded = True

    def __init__(
        self,
        target: str | None = None,
        *,
        persist_dir: str | os.PathLike[str] | None = None,
        vars: dict[str, Any] | None = None,  # noqa: A002
        log_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        self.target = target or TARGET
        self._own_tmp = Path(tempfile.mkdtemp(prefix='exchange-bb-'))
        self.log_dir = Path(log_dir) if log_dir else self._own_tmp
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.persist_dir = (
            Path(persist_dir) if persist_dir else self._own_tmp / 'persist'
        )
        self.vars: dict[str, str] = {
            'SSE_KEEPALIVE_S': '1',
            'LISTEN_TIMEOUT_S': str(LISTEN_TIMEOUT_S),
            # Local runs choose "no authentication" here, where wrangler.toml
            # (what `wrangler deploy` publishes) deliberately chooses nothing.
            'AUTH_METHOD': 'none',
        }
        for k, v in (vars or {}).items():
            if v is None:
                self.vars.pop(k, None)
            else:
                self.vars[k] = str(v)
        self.port: int | None = None
        self.proxy: RecordingProxy | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path: Path | None = None
        self._log_file: Any = None
        self._starts = 0

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError('exchange process not started')
        if self.proxy is not None:
            return self.proxy.url
        return f'http://127.0.0.1:{self.port}'

    def _command(self) -> tuple[list[str], dict[str, str], Path]:
        env = dict(os.environ)
        if self.target == 'worker':
            cmd = [
                str(REPO / 'node_modules' / '.bin' / 'wrangler'),
                'dev',
                '--config',
                'wrangler.toml',
                '--ip',
                '127.0.0.1',
                '--port',
                str(self.port),
                '--persist-to',
                str(self.persist_dir),
                # Its own inspector port: the default (9229) is shared by every
                # wrangler dev on the machine, and two starting at once collide.
                '--inspector-port',
                str(free_port()),
            ]
            for k, v in self.vars.items():
                cmd += ['--var', f'{k}:{v}']
            env.update(
                {
                    'EXCHANGE_SKIP_BUILD': '1',
                    'CLOUDFLARE_CF_FETCH_ENABLED': 'false',
                    'WRANGLER_SEND_METRICS': 'false',
                    'WRANGLER_HIDE_BANNER': 'true',
                    'CI': 'true',
                    'NO_COLOR': '1',
                },
            )
            return cmd, env, REPO
        if self.target == 'dev-script':
            # The README's first command, as a user runs it (its own defaults).
            env.update(
                {
                    'EXCHANGE_PORT': str(self.port),
                    'EXCHANGE_STATE_DIR': str(self.persist_dir),
                    'EXCHANGE_SKIP_BUILD': '1',
                    'CI': 'true',
                    'NO_COLOR': '1',
                },
            )
            env.pop('AUTH_METHOD', None)
            command = ['bash', str(REPO / 'scripts' / 'dev.sh'), '--inspector-port', str(free_port())]
            return command, env, REPO
        # upstream: academy's own aiohttp server, in-memory backend.
        cfg = self._own_tmp / f'exchange-{self._starts}.toml'
        cfg.write_text(
            academy_config(
                self.port,
                ['kind = "python"', f'message_size_limit_kb = {MESSAGE_SIZE_LIMIT // 1024}'],
            ),
        )
        cmd = [sys.executable, '-m', 'academy.exchange.cloud', '--config', str(cfg)]
        env['PYTHONUNBUFFERED'] = '1'
        return cmd, env, self._own_tmp

    def start(self) -> ExchangeProcess:
        """Start on a free port. A port picked free can be taken by another
        process before ours binds it; then the start is tried again, on new
        ports (at most three times)."""
        for attempt in range(3):
            try:
                return self._start_once()
            except RuntimeError as e:
                if 'Address already in use' not in str(e) or attempt == 2:
                    raise
        raise AssertionError('unreachable')

    def _start_once(self) -> ExchangeProcess:
        if self.proc is not None:
            raise RuntimeError('already started')
        self._starts += 1
        self.port = free_port()
        self.persist_dir.mkdir(parents=True, exist_ok=True)
        cmd, env, cwd = self._command()
        self.log_path = self.log_dir / f'{self.target}-{self.port}.log'
        self._log_file = open(self.log_path, 'wb')  # noqa: SIM115
        self._log_file.write(('$ ' + ' '.join(cmd) + '\n').encode())
        self._log_file.flush()
        self.proc = subprocess.Popen(
            cmd,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        _LIVE.add(self)
        if CHECK_OPENAPI and self.recorded and self.target in ('worker', 'dev-script'):
            self.proxy = RecordingProxy(self.port, TRAFFIC)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        assert self.proc is not None
        probe = {'mailbox': new_id('user')}
        deadline = time.monotonic() + READY_TIMEOUT_S
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f'{self.target} exited early with code '
                    f'{self.proc.returncode}; log tail:\n{self.log_tail()}',
                )
            try:
                requests.get(f'{self.url}/mailbox', json=probe, timeout=5)
                return  # any HTTP answer means the server is up
            except requests.RequestException as e:
                last_error = e
            time.sleep(0.2)
        raise RuntimeError(
            f'{self.target} not ready within {READY_TIMEOUT_S}s on {self.url} '
            f'(last error: {last_error}); log tail:\n{self.log_tail()}',
        )

    def log_tail(self, limit: int = 6000) -> str:
        if self._log_file is not None:
            self._log_file.flush()
        return _tail(self.log_path, limit) if self.log_path else ''

    def output(self) -> str:
        """Everything the process wrote so far (without the harness's own first
        line, the command, which holds the ``--var`` settings)."""
        if self._log_file is not None:
            self._log_file.flush()
        if self.log_path is None:
            return ''
        text = self.log_path.read_text('utf-8', 'replace')
        return text.split('\n', 1)[1] if '\n' in text else ''

    def request_log(self) -> list[dict[str, Any]]:
        """The Worker's request log records written so far (README "Logs"), in
        order. wrangler prints each line as the Worker wrote it, an error's with an
        ``[ERROR]`` prefix; the JSON is found by its first field."""
        return [
            json.loads(match.group())
            for match in re.finditer(r'\{"route":.*\}', self.output())
        ]

    def kill(self) -> None:
        """SIGKILL our whole process group at once: a crash, as `kill -9`."""
        if self.proc is not None:
            _signal_group(self.proc.pid, signal.SIGKILL)
        self.stop()

    def stop(self) -> None:
        """SIGTERM our process group, wait up to 10 s, then SIGKILL the group.

        The leader is left unreaped (a zombie) until the group is killed, so
        its pid -- our group id -- cannot be reused by anyone else meanwhile.
        """
        if self.proxy is not None:
            self.proxy.close()
            self.proxy = None
        proc = self.proc
        if proc is None:
            return
        pgid = proc.pid  # start_new_session=True: the group id is our pid
        _signal_group(pgid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        while not _exited_unreaped(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        # Whatever is left of *our* group (wrangler spawns workerd) goes now.
        _signal_group(pgid, signal.SIGKILL)
        try:
            proc.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:  # pragma: no cover
            pass
        self.proc = None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        _LIVE.discard(self)

    def cleanup(self) -> None:
        """Stop, then remove the private temporary directory."""
        self.stop()
        shutil.rmtree(self._own_tmp, ignore_errors=True)

    def __enter__(self) -> ExchangeProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def resident_bytes(self) -> int:
        """Resident memory of every live process in this process's group (for
        the worker: wrangler's Node processes and the workerd they run)."""
        if self.proc is None:
            return 0
        return 1024 * resident_kib(group_members({self.proc.pid}))


def serving(proc: ExchangeProcess) -> Iterator[ExchangeProcess]:
    """Start ``proc``, yield it, then stop it and remove its files: the body of a
    fixture."""
    proc.start()
    try:
        yield proc
    finally:
        proc.cleanup()


def wrangler_config() -> dict[str, Any]:
    return tomllib.loads((REPO / 'wrangler.toml').read_text())


class WorkerdDirectProcess(ExchangeProcess):
    """The built Worker served by workerd through Miniflare's API
    (``bench/serve_workerd.mjs``), with no ``wrangler dev`` proxy in front.
    That proxy answers 503 "Your worker restarted mid-request", or cuts the
    answer short, when the Worker answers a request whose upload has not
    finished (a refused oversized body), and spends most of the CPU of a
    request: tests of those answers and the benchmark use this instead.

    Miniflare's entry worker still runs in front of ours inside workerd (about
    1 ms of CPU per request here). The ``workerd`` binary alone, from a plain
    config, would avoid it, but failed with ``SQLITE_NOMEM`` after a few
    thousand SQLite-backed objects on this machine (the benchmark's registry
    workload).

    Args:
        build_dir: The built Worker to serve (``build/`` unless told).
        kwargs: As ``ExchangeProcess``; ``vars`` go on top of wrangler.toml's.
    """

    # Its tests must see exactly what workerd answers, and upload hundreds of MB.
    recorded = False

    def __init__(self, build_dir: Path = REPO / 'build', **kwargs: Any) -> None:
        super().__init__('worker', **kwargs)
        self.build_dir = build_dir

    def _command(self) -> tuple[list[str], dict[str, str], Path]:
        config = wrangler_config()
        settings = {k: str(v) for k, v in config.get('vars', {}).items()}
        cmd = [
            'node',
            str(REPO / 'bench' / 'serve_workerd.mjs'),
            '--script',
            str(entry_module(self.build_dir)),
            '--port',
            str(self.port),
            '--persist',
            str(self.persist_dir),
            '--vars',
            json.dumps({**settings, **self.vars}),
            '--compatibility-date',
            config['compatibility_date'],
        ]
        return cmd, dict(os.environ), REPO


def entry_module(build_dir: Path) -> Path:
    """The module a build is served from: its ``entry.mjs`` (the object classes as
    RPC needs them), or ``index.js`` for builds made before it existed."""
    entry = build_dir / 'entry.mjs'
    return entry if entry.exists() else build_dir / 'index.js'


def group_members(groups: set[int]) -> list[Path]:
    """/proc entries of every live process in the process groups ``groups``."""
    members = []
    for entry in Path('/proc').iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / 'stat').read_text()
        except OSError:
            continue  # exited meanwhile
        # Fields after "(comm)": state ppid pgrp ... utime(14) stime(15).
        if int(stat.rsplit(')', 1)[1].split()[2]) in groups:
            members.append(entry)
    return members


def resident_kib(members: list[Path]) -> int:
    """VmRSS of the processes at these /proc entries, in KiB."""
    kib = 0
    for entry in members:
        try:
            lines = (entry / 'status').read_text().splitlines()
        except OSError:
            continue  # exited meanwhile
        kib += sum(int(line.split()[1]) for line in lines if line.startswith('VmRSS:'))
    return kib


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _exited_unreaped(pid: int) -> bool:
    """True once our child ``pid`` has exited (without reaping it)."""
    try:
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return True  # already reaped
    return info is not None


@atexit.register
def _stop_leftovers() -> None:  # pragma: no cover - safety net
    for p in list(_LIVE):
        p.stop()


# ---------------------------------------------------------------- identifiers


def new_id(role: str = 'user', name: str | None = None) -> str:
    """An entity id as the client sends it: a JSON *string*."""
    return json.dumps({'uid': str(uuid.uuid4()), 'name': name, 'role': role})


def uid_of(entity_id: str | dict[str, Any]) -> str:
    if isinstance(entity_id, str):
        entity_id = json.loads(entity_id)
    return entity_id['uid']


def make_message(
    src: str,
    dest: str,
    *,
    kind: str = 'request',
    tag: str | None = None,
    label: str | None = None,
    body: str = '{"kind": "ping-request"}',
    protocol_version: str = '1.1',
) -> str:
    """Hand-built message JSON text (deliberate spacing, body passed verbatim).

    ``src``/``dest`` are entity-id JSON strings; ``body`` is raw JSON text.
    academy-py 1.0.0 sends protocol_version "1.1" (PROTOCOL_VERSION).
    """
    tag = tag or str(uuid.uuid4())
    label_text = 'null' if label is None else json.dumps(label)
    return (
        '{"header": {"src": ' + src + ', "dest": ' + dest
        + ', "tag": "' + tag + '", "label": ' + label_text
        + ', "kind": "' + kind + '", "protocol_version": "'
        + protocol_version + '", "academy_version": "1.0.0"},  "body": '
        + body + '}'
    )


def status_answer(status: str) -> dict[str, Any]:
    """GET /mailbox's whole answer for ``status``. The worker adds ``exists`` (all
    academy-py 0.1.0's client reads; true for every mailbox ever created, as its
    server said); academy's 1.0 server answers ``status`` alone.
    """
    if TARGET == 'upstream':
        return {'status': status}
    return {'status': status, 'exists': status != 'MISSING'}


def tag_of(message_text: str) -> str:
    return json.loads(message_text)['header']['tag']


# A mailbox's record (its counts and heartbeat stamp) is written at most once
# per this many seconds (`RECORD_WRITE_INTERVAL_S` in src/core/mailbox.rs): a
# count or stamp that comes sooner after its last write is staged and written
# by a timer, in no request's answer.
RECORD_WRITE_INTERVAL_S = 1.0


def past_record_writes() -> None:
    """Waits until every record written so far may be written again at once, so
    that the next count or stamp is written by the request that makes it."""
    time.sleep(RECORD_WRITE_INTERVAL_S + 0.2)


def costs(response: requests.Response) -> tuple[int, int]:
    """The object calls and SQLite rows written that an answer reports (with
    ``EXCHANGE_COST_HEADERS``)."""
    return (
        int(response.headers['x-exchange-object-calls']),
        int(response.headers['x-exchange-rows-written']),
    )


def scenario_outcome(
    python: Path,
    script: Path,
    *args: str,
    timeout: float,
) -> dict[str, Any]:
    """Runs an older academy-py client's scenario ``script`` with the python of
    its own venv (it cannot be imported next to academy-py 1.0.0); returns the
    JSON it prints."""
    assert python.exists(), f'{python} is missing: run scripts/bootstrap.sh'
    done = subprocess.run(
        [str(python), str(script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


# ----------------------------------------------------------------------- API


class Api:
    """One method per route; raw ``requests``; every call bounded."""

    def __init__(
        self,
        url: str,
        timeout: float = HTTP_TIMEOUT,
        *,
        headers: dict[str, str] | None = None,
    ) -> None:
        """``headers`` (e.g. ``Authorization``) go with every request; a
        single call can override one, or drop it by passing ``None``.

        Like academy-py 1.0, every request carries ``academy_version``: the
        worker stamps the heartbeat on sends, receives and listens of clients
        without it (academy-py 0.5); ``headers={'academy_version': None}`` makes
        such a client."""
        self.url = url.rstrip('/')
        self.timeout = timeout
        self.session = requests.Session()
        self.session.headers['academy_version'] = ACADEMY_VERSION
        self.session.headers.update(headers or {})

    def request(
        self,
        method: str,
        path: str,
        *,
        timeout: float | tuple[float, float] | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        return self.session.request(
            method,
            self.url + path,
            timeout=self.timeout if timeout is None else timeout,
            **kwargs,
        )

    # mailboxes
    def create(self, mailbox: Any, agent: str | None = None) -> requests.Response:
        body: dict[str, Any] = {'mailbox': mailbox}
        if agent is not None:
            body['agent'] = agent
        return self.request('POST', '/mailbox', json=body)

    def terminate(self, mailbox: Any) -> requests.Response:
        return self.request('DELETE', '/mailbox', json={'mailbox': mailbox})

    def status(self, mailbox: Any) -> requests.Response:
        return self.request('GET', '/mailbox', json={'mailbox': mailbox})

    def status_value(self, mailbox: Any) -> str:
        """The ``status`` GET /mailbox answers, having checked the whole answer."""
        r = self.status(mailbox)
        assert r.status_code == 200, (r.status_code, r.text)
        answer = r.json()
        assert answer == status_answer(answer.get('status')), answer
        return answer['status']

    # messages
    def send(self, message: str) -> requests.Response:
        return self.request('PUT', '/message', json={'message': message})

    def recv(
        self,
        mailbox: Any,
        timeout: Any = None,
        *,
        http_timeout: float | None = None,
    ) -> requests.Response:
        body: dict[str, Any] = {'mailbox': mailbox}
        if timeout is not None:
            body['timeout'] = timeout
        if http_timeout is None:
            wait = timeout if isinstance(timeout, (int, float)) else 0
            http_timeout = self.timeout + max(0, min(wait, 120))
        return self.request('GET', '/message', json=body, timeout=http_timeout)

    def recv_message(self, mailbox: Any, timeout: float = 5) -> str:
        r = self.recv(mailbox, timeout)
        assert r.status_code == 200, (r.status_code, r.text)
        return r.json()['message']

    def listen(
        self,
        mailbox: Any,
        timeout: Any = None,
        *,
        read_timeout: float = 10,
        headers: dict[str, str] | None = None,
    ) -> requests.Response:
        body: dict[str, Any] = {'mailbox': mailbox}
        if timeout is not None:
            body['timeout'] = timeout
        hdrs = {'Accept': 'text/event-stream', 'Cache-Control': 'no-cache'}
        hdrs.update(headers or {})
        return self.request(
            'GET',
            '/mailbox/listen',
            json=body,
            headers=hdrs,
            stream=True,
            timeout=(10, read_timeout),
        )

    # discovery
    def discover(self, agent: str, allow_subclasses: bool) -> requests.Response:
        return self.request(
            'GET',
            '/discover',
            json={'agent': agent, 'allow_subclasses': allow_subclasses},
        )

    def discover_uids(self, agent: str, allow_subclasses: bool) -> list[str]:
        r = self.discover(agent, allow_subclasses)
        assert r.status_code == 200, (r.status_code, r.text)
        ids = r.json()['agent_ids']
        return [x for x in ids.split(',') if x]

    # sharing
    def share(self, mailbox: Any, group_id: str) -> requests.Response:
        return self.request(
            'POST',
            '/mailbox/share',
            json={'mailbox': mailbox, 'group_id': group_id},
        )

    def shares(self, mailbox: Any) -> requests.Response:
        return self.request('GET', '/mailbox/share', json={'mailbox': mailbox})

    def unshare(self, mailbox: Any, group_id: str) -> requests.Response:
        return self.request(
            'DELETE',
            '/mailbox/share',
            json={'mailbox': mailbox, 'group_id': group_id},
        )

    # heartbeat and stats
    def heartbeat(self, mailbox: Any) -> requests.Response:
        return self.request(
            'POST',
            '/mailbox/heartbeat',
            json={'mailbox': mailbox},
        )

    def get_heartbeat(self, mailbox: Any) -> requests.Response:
        return self.request(
            'GET',
            '/mailbox/heartbeat',
            json={'mailbox': mailbox},
        )

    def stats(self, mailbox: Any) -> requests.Response:
        return self.request('GET', '/mailbox/stats', json={'mailbox': mailbox})

    def stats_value(self, mailbox: Any) -> dict[str, int]:
        r = self.stats(mailbox)
        assert r.status_code == 200, (r.status_code, r.text)
        return r.json()

    # conveniences
    def new_mailbox(
        self,
        role: str = 'user',
        agent: str | None = None,
        name: str | None = None,
    ) -> str:
        mid = new_id(role, name)
        r = self.create(mid, agent)
        assert r.status_code == 200, (r.status_code, r.text)
        return mid


# ----------------------------------------------------------------------- SSE


@dataclass
class Event:
    data: str
    id: str | None = None  # noqa: A003
    event: str | None = None
    received_at: float = 0.0


@dataclass
class SSEStream:
    """Incremental server-sent-events reader over a streamed ``requests``
    response. Lines may end in CRLF, LF or CR (the SSE grammar); a CR at the
    very end of a read is held until the next byte shows whether LF follows.
    Comment lines, ``id:`` and ``retry:`` fields are recorded with times.
    """

    response: requests.Response
    closed: bool = False
    comments: list[tuple[float, str]] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    retries: list[str] = field(default_factory=list)
    first_bytes_at: float | None = None
    raw: bytearray = field(default_factory=bytearray)
    _buf: bytes = b''
    _lines: collections.deque[str] = field(default_factory=collections.deque)

    def _fill(self) -> None:
        data = self.response.raw.read1(65536)
        if not data:
            self.closed = True
            if self._buf:
                # A final line without terminator (or a lone CR).
                self._lines.append(
                    self._buf.rstrip(b'\r').decode('utf-8', 'replace'),
                )
                self._buf = b''
            return
        if self.first_bytes_at is None:
            self.first_bytes_at = time.monotonic()
        self.raw += data
        buf = self._buf + data
        while True:
            m = re.search(rb'\r\n|\r|\n', buf)
            if m is None:
                break
            if m.group() == b'\r' and m.end() == len(buf):
                break  # wait: the LF of a CRLF may be in the next read
            self._lines.append(buf[: m.start()].decode('utf-8', 'replace'))
            buf = buf[m.end():]
        self._buf = buf

    def next_line(self) -> str | None:
        """Next line (without terminator); None once the stream has ended.
        Comment lines are also recorded in ``comments`` with the time read.

        Raises ``requests``/``urllib3`` timeout errors when no byte arrives
        within the response's read timeout.
        """
        while not self._lines:
            if self.closed:
                return None
            self._fill()
        line = self._lines.popleft()
        if line.startswith(':'):
            self.comments.append((time.monotonic(), line[1:]))
        return line

    def next_event(self) -> Event | None:
        """Next event carrying data; None once the stream has ended."""
        data: list[str] = []
        event_id: str | None = None
        event_name: str | None = None
        while True:
            line = self.next_line()
            if line is None:
                return None
            now = time.monotonic()
            if line == '':
                if data:
                    return Event(
                        data='\n'.join(data),
                        id=event_id,
                        event=event_name,
                        received_at=now,
                    )
                event_id = event_name = None
                continue
            if line.startswith(':'):
                continue  # a comment (recorded by next_line)
            name, _, value = line.partition(':')
            value = value[1:] if value.startswith(' ') else value
            if name == 'data':
                data.append(value)
            elif name == 'id':
                event_id = value
                self.ids.append(value)
            elif name == 'retry':
                self.retries.append(value)
            elif name == 'event':
                event_name = value

    def drain(self) -> list[Event]:
        """Read until the stream ends; return the remaining data events."""
        events = []
        while True:
            ev = self.next_event()
            if ev is None:
                return events
            events.append(ev)

    def close(self) -> None:
        self.response.close()


# ---------------------------------------------------------- async test bounds

STEP_S = 20  # bound on any single await in a client scenario
TEST_S = 120  # bound on a whole scenario


async def bounded(aw, seconds: float = STEP_S):
    """Await `aw`, failing with TimeoutError after `seconds`."""
    return await asyncio.wait_for(aw, seconds)


def run(coro, seconds: float = TEST_S):
    """Run a client scenario to completion, bounded in time."""
    return asyncio.run(asyncio.wait_for(coro, seconds))
