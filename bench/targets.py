"""The exchanges under test.

Each target is started on a free 127.0.0.1 port in its own session and stopped
through its own process group, using the black-box test harness
(``tests/blackbox/harness.py``): it already knows how to start ``wrangler dev``,
workerd without the dev proxy and academy's server, and how to stop them; the
targets it does not know (a ``wrangler dev`` on a build snapshot, academy's
Redis backend, the floors) are small subclasses that only change the command line.

A target's CPU time is the user + system time of the live processes in its
process groups that serve requests: every one (a Redis-backed target counts
redis-server too), except that where workerd runs, workerd alone counts. The node
process that launched it through Miniflare (or wrangler) serves no request; it
relays workerd's output, so it would charge each of the worker's log lines about
0.2-0.3 ms of a local pipe that a deployed Worker does not have.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import sys
import time
import tomllib
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO / 'tests' / 'blackbox'))

import harness  # noqa: E402  (the black-box test harness, reused as is)

# The floors' configs: each one's module, object bindings and compatibility date.
FLOOR_CONFIG = BENCH / 'floor' / 'wrangler.toml'
FLOOR_DESIGN_CONFIG = BENCH / 'floor_design' / 'wrangler.toml'

# Settings every target runs with: upstream's defaults, and the worker's
# production keep-alive (the tests use 1 s to exercise it; here it is noise).
LISTEN_TIMEOUT_S = 60
WORKER_VARS = {
    'LISTEN_TIMEOUT_S': str(LISTEN_TIMEOUT_S),
    'SSE_KEEPALIVE_S': '15',
    'EXCHANGE_COST_HEADERS': '1',
    # wrangler.toml leaves the choice to each deployment; the benchmark runs open.
    'AUTH_METHOD': 'none',
}


def snapshot_build(dest: Path, source: Path = REPO / 'build') -> dict[str, str]:
    """Copy a built Worker (by default this checkout's build/) to ``dest``: the
    worker targets serve such copies, so a rebuild (or a src/ edit that
    ``wrangler dev`` would notice) during the run changes nothing. Returns the
    copy's fingerprint."""
    if not (source / 'index.js').exists():
        raise RuntimeError(f'{source} holds no build: run scripts/build.sh first')
    shutil.copytree(source, dest)
    wasm = dest / 'index_bg.wasm'
    return {
        'built_at': time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(wasm.stat().st_mtime)),
        'wasm_sha256': hashlib.sha256(wasm.read_bytes()).hexdigest()[:16],
        'wasm_bytes': str(wasm.stat().st_size),
    }


class WranglerDevProcess(harness.ExchangeProcess):
    """``wrangler dev`` exactly as the black-box tests start it, except that its
    config (written next to its state) serves the build snapshot and has no
    ``[build]`` step, so wrangler neither rebuilds nor restarts when src/ changes."""

    def __init__(self, build_dir: Path, **kwargs) -> None:
        super().__init__('worker', vars=WORKER_VARS, **kwargs)
        self.build_dir = build_dir

    def _command(self) -> tuple[list[str], dict[str, str], Path]:
        cmd, env, cwd = super()._command()
        config = harness.wrangler_config()
        config.pop('build', None)
        config['main'] = str(harness.entry_module(self.build_dir))
        path = self._own_tmp / 'wrangler.json'
        path.write_text(json.dumps(config, indent=1))
        cmd[cmd.index('--config') + 1] = str(path)
        return cmd, env, cwd


class AcademyRedisProcess(harness.ExchangeProcess):
    """academy's server with its Redis backend, on an already started ``redis``."""

    def __init__(self, redis: RedisProcess, **kwargs) -> None:
        super().__init__('upstream', **kwargs)
        self.redis = redis

    def _command(self) -> tuple[list[str], dict[str, str], Path]:
        config = self._own_tmp / 'exchange-redis.toml'
        config.write_text(
            harness.academy_config(
                self.port,
                ['kind = "redis"', 'hostname = "127.0.0.1"', f'port = {self.redis.port}'],
            ),
        )
        cmd = [sys.executable, '-m', 'academy.exchange.cloud', '--config', str(config)]
        return cmd, {**os.environ, 'PYTHONUNBUFFERED': '1'}, self._own_tmp


class RedisProcess(harness.ExchangeProcess):
    """A private redis-server: 127.0.0.1 only, no persistence."""

    def __init__(self, **kwargs) -> None:
        super().__init__('redis', **kwargs)

    def _command(self) -> tuple[list[str], dict[str, str], Path]:
        cmd = [
            'redis-server',
            '--bind',
            '127.0.0.1',
            '--port',
            str(self.port),
            '--save',
            '',
            '--appendonly',
            'no',
        ]
        return cmd, dict(os.environ), self._own_tmp

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + harness.READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                raise RuntimeError(f'redis-server exited early; log:\n{self.log_tail()}')
            try:
                with socket.create_connection(('127.0.0.1', self.port), timeout=2) as s:
                    s.sendall(b'PING\r\n')
                    if s.recv(16).startswith(b'+PONG'):
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f'redis-server not ready; log:\n{self.log_tail()}')


class InspectedWorkerdProcess(harness.WorkerdDirectProcess):
    """The worker served directly with workerd's DevTools inspector open on a
    free 127.0.0.1 port (``inspector_port``, picked again on each start), for
    ``profile.py --cpu-profile``."""

    inspector_port: int | None = None

    def _command(self) -> tuple[list[str], dict[str, str], Path]:
        cmd, env, cwd = super()._command()
        self.inspector_port = harness.free_port()
        return [*cmd, '--inspector-port', str(self.inspector_port)], env, cwd


class FloorProcess(harness.ExchangeProcess):
    """A floor (``bench/floor/`` or ``bench/floor_design/``, by its
    ``wrangler.toml``) served exactly as the worker is served directly:
    ``bench/serve_workerd.mjs``, with the module, object bindings and
    compatibility date of that ``wrangler.toml``, and ``bench/`` as the modules'
    root (both import ``bench/floor/wire.js``)."""

    def __init__(self, name: str, config: Path, **kwargs) -> None:
        super().__init__(name, **kwargs)
        self.config = config

    def _command(self) -> tuple[list[str], dict[str, str], Path]:
        config = tomllib.loads(self.config.read_text())
        objects = {b['name']: b['class_name'] for b in config['durable_objects']['bindings']}
        cmd = [
            'node',
            str(BENCH / 'serve_workerd.mjs'),
            '--script',
            str(self.config.parent / config['main']),
            '--modules-root',
            str(BENCH),
            '--port',
            str(self.port),
            '--persist',
            str(self.persist_dir),
            '--objects',
            json.dumps(objects),
            '--compatibility-date',
            config['compatibility_date'],
        ]
        return cmd, dict(os.environ), REPO


class Target:
    """One exchange under test: its processes, URL and CPU accounting.

    ``ours`` marks this worker (its responses carry the cost headers).
    ``whole_protocol`` is False for the floors, which serve only what workloads
    1-3 use: the registry (4) and idle listener (5) workloads leave it out.
    """

    def __init__(
        self, name: str, processes: list[harness.ExchangeProcess], ours: bool, whole_protocol: bool = True,
    ) -> None:
        self.name = name
        self.processes = processes  # started in order; the last one serves HTTP
        self.ours = ours
        self.whole_protocol = whole_protocol

    @property
    def url(self) -> str:
        return self.processes[-1].url

    def start(self) -> Target:
        try:
            for process in self.processes:
                process.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.cleanup()

    def process_groups(self) -> set[int]:
        # start_new_session=True: each process leads its own group.
        return {p.proc.pid for p in self.processes if p.proc is not None}

    def _members(self) -> list[Path]:
        """/proc entries of every live process in this target's groups."""
        return harness.group_members(self.process_groups())

    def cpu_seconds(self) -> float:
        """utime + stime of the processes that serve this target's requests
        (see the module's doc)."""
        by_program = self.cpu_seconds_by_program()
        if 'workerd' in by_program:
            return by_program['workerd']
        return sum(by_program.values())

    def cpu_seconds_by_program(self) -> dict[str, float]:
        """utime + stime of the live processes in this target's groups, summed
        by program name (e.g. ``workerd`` apart from the ``node`` that
        launched it and relays its log lines)."""
        ticks: dict[str, int] = {}
        for entry in self._members():
            try:
                stat = (entry / 'stat').read_text()
            except OSError:
                continue
            program = stat.split('(', 1)[1].rsplit(')', 1)[0]
            fields = stat.rsplit(')', 1)[1].split()
            ticks[program] = ticks.get(program, 0) + int(fields[11]) + int(fields[12])
        return {program: n / os.sysconf('SC_CLK_TCK') for program, n in ticks.items()}

    def rss_mb(self) -> float:
        """Resident memory of every live process in this target's groups."""
        return harness.resident_kib(self._members()) / 1024


def workerd_direct(log_dir: Path, build_dir: Path) -> Target:
    return Target('workerd', [harness.WorkerdDirectProcess(build_dir, vars=WORKER_VARS, log_dir=log_dir)], ours=True)


def workerd_inspected(log_dir: Path, build_dir: Path) -> Target:
    """``workerd`` with its inspector open (its port: the process's ``inspector_port``)."""
    return Target('workerd', [InspectedWorkerdProcess(build_dir, vars=WORKER_VARS, log_dir=log_dir)], ours=True)


def workerd_before(log_dir: Path, build_dir: Path) -> Target:
    """An earlier build (``run.py --baseline-build``) served exactly as ``workerd``."""
    return Target(BEFORE, [harness.WorkerdDirectProcess(build_dir, vars=WORKER_VARS, log_dir=log_dir)], ours=True)


def floor(log_dir: Path, build_dir: Path) -> Target:
    """The runtime's floor for workloads 1-3 (``bench/floor/``); ``build_dir`` is unused."""
    return Target(FLOOR, [FloorProcess(FLOOR, FLOOR_CONFIG, log_dir=log_dir)], ours=False, whole_protocol=False)


def floor_design(log_dir: Path, build_dir: Path) -> Target:
    """The floor of the worker's design for workloads 1-3 (``bench/floor_design/``);
    ``build_dir`` is unused."""
    process = FloorProcess(FLOOR_DESIGN, FLOOR_DESIGN_CONFIG, log_dir=log_dir)
    return Target(FLOOR_DESIGN, [process], ours=False, whole_protocol=False)


def wrangler_dev(log_dir: Path, build_dir: Path) -> Target:
    return Target('wrangler-dev', [WranglerDevProcess(build_dir, log_dir=log_dir)], ours=True)


def academy_memory(log_dir: Path, build_dir: Path) -> Target:
    return Target('academy-memory', [harness.ExchangeProcess('upstream', log_dir=log_dir)], ours=False)


def academy_redis(log_dir: Path, build_dir: Path) -> Target:
    redis = RedisProcess(log_dir=log_dir)
    server = AcademyRedisProcess(redis, log_dir=log_dir)
    return Target('academy-redis', [redis, server], ours=False)


BEFORE = 'workerd-before'
FLOOR = 'floor'
FLOOR_DESIGN = 'floor-design'

# Name -> constructor, in the order of the first round. Each takes the log
# directory and the build it serves (BEFORE: the earlier build; it runs only when
# one is given).
ALL = {
    'workerd': workerd_direct,
    FLOOR: floor,
    FLOOR_DESIGN: floor_design,
    BEFORE: workerd_before,
    'wrangler-dev': wrangler_dev,
    'academy-memory': academy_memory,
    'academy-redis': academy_redis,
}
