"""A V8 CPU profile of the Worker's isolate, over workerd's DevTools inspector.

``record`` connects to the inspector (``serve_workerd.mjs --inspector-port``) as
the Chrome DevTools Protocol's client, starts the sampling profiler, runs a loop
of requests and returns the profile (the ``.cpuprofile`` JSON DevTools reads).
``summarize`` turns its samples into self and inclusive time per function, and
per group of functions (``GROUPS``), as shares of all the isolate's samples.

    python bench/cpu_profile.py FILE.cpuprofile [--top N] [--focus REGEX ...]

prints the tables of a saved profile again (``--focus``: the inclusive share of
the functions a regular expression matches, e.g. ``__wbg_log`` for console.log).

Only 127.0.0.1 is contacted, and every protocol call has a timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import re
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path

import aiohttp

# workerd's inspector names each worker's isolate "<service>:<worker>"; Miniflare
# serves the user's Worker (and its Durable Objects, in the same isolate) as
# service "core:user", worker "" (Miniflare's own entry worker is "core:entry").
WORKER_TARGET = 'core:user:'
CALL_TIMEOUT_S = 60
# Profiler.stop answers with the whole profile in one message.
MAX_MESSAGE_BYTES = 1 << 30

# V8 samples the isolate only while a thread has entered it: "(program)" is
# workerd's own code inside it with no JS or wasm frame on the stack, "(idle)"
# the time workerd marks it idle. Shares are of the other ("busy") samples.
PROGRAM = '(program)'
IDLE = '(idle)'
ROOT = '(root)'

def target_url(inspector_port: int, target: str = WORKER_TARGET) -> str:
    """The WebSocket URL of ``target``, from the inspector's ``/json`` listing."""
    listing = f'http://127.0.0.1:{inspector_port}/json'
    with urllib.request.urlopen(listing, timeout=CALL_TIMEOUT_S) as response:
        targets = json.load(response)
    for entry in targets:
        if entry['id'] == target:
            return entry['webSocketDebuggerUrl']
    raise RuntimeError(f'no inspector target {target!r} in {[t["id"] for t in targets]}')


def record(inspector_port: int, run: Callable[[], None], interval_us: int = 100) -> dict:
    """Profile the Worker's isolate while ``run()`` runs (in another thread);
    returns the profile."""
    return asyncio.run(_record(target_url(inspector_port), run, interval_us))


async def _record(url: str, run: Callable[[], None], interval_us: int) -> dict:
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=CALL_TIMEOUT_S)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.ws_connect(url, max_msg_size=MAX_MESSAGE_BYTES) as socket,
    ):
        ids = iter(range(1, 1 << 31))

        async def call(method: str, **params: object) -> dict:
            call_id = next(ids)
            await socket.send_json({'id': call_id, 'method': method, 'params': params})
            async with asyncio.timeout(CALL_TIMEOUT_S):
                while True:  # skip events: only this call's answer counts
                    reply = json.loads(await socket.receive_str())
                    if reply.get('id') == call_id:
                        if 'error' in reply:
                            raise RuntimeError(f'{method}: {reply["error"]}')
                        return reply.get('result', {})

        await call('Profiler.enable')
        await call('Profiler.setSamplingInterval', interval=interval_us)
        await call('Profiler.start')
        try:
            await asyncio.to_thread(run)
        finally:
            profile = (await call('Profiler.stop'))['profile']
            await call('Profiler.disable')
    return profile


# Groups of functions, first match wins: (group, test on (function name, url)).
# Wasm functions are named by the module's name section (demangled Rust paths);
# worker-build minifies index.js, so its own helpers have one- or two-letter
# names (its `__wbg_*` imports keep theirs). Once V8 optimizes a `__wbg_*` shim,
# the runtime API it calls (console.log, request.cf, a stub's RPC method) is
# often counted as the shim's self time, with no frame of its own.
GROUPS: list[tuple[str, Callable[[str, str], bool]]] = [
    ('idle', lambda name, url: name == IDLE),
    ('program (workerd, no JS frame)', lambda name, url: name == PROGRAM),
    ('GC', lambda name, url: name == '(garbage collector)'),
    ('glue: index.js (wasm-bindgen shims)', lambda name, url: url.endswith('index.js')),
    ('glue: wasm<->js transitions', lambda name, url: name.startswith(('wasm-to-js', 'js-to-wasm'))),
    ('glue: entry.mjs', lambda name, url: url.endswith('entry.mjs')),
    ('glue wasm: serde_wasm_bindgen', lambda name, url: _wasm(url) and 'serde_wasm_bindgen' in name),
    ('glue wasm: worker crate', lambda name, url: _wasm(url) and _in(name, 'worker::', 'worker_sys::')),
    ('glue wasm: wasm_bindgen/js_sys/web_sys', lambda name, url: _wasm(url) and _in(name, 'wasm_bindgen', 'js_sys', 'web_sys')),
    ('ours wasm: serde_json', lambda name, url: _wasm(url) and 'serde_json' in name),
    ('ours wasm: academy_exchange', lambda name, url: _wasm(url) and 'academy_exchange' in name),
    ('wasm: allocator', lambda name, url: _wasm(url) and _in(name, 'dlmalloc', 'alloc::', '__rust_', 'memcpy', 'memmove', 'memset')),
    ('wasm: other (core, std, deps)', lambda name, url: _wasm(url)),
    ('runtime natives and builtins', lambda name, url: True),
]


def _wasm(url: str) -> bool:
    return url.startswith('wasm://')


def _in(name: str, *parts: str) -> bool:
    return any(part in name for part in parts)


def group_of(name: str, url: str) -> str:
    return next(group for group, test in GROUPS if test(name, url))


def summarize(profile: dict) -> dict:
    """Samples per function (self, and inclusive: on the stack) and per group
    (self). A nameless runtime native (console.log is one) is named after its
    caller."""
    nodes = {node['id']: node for node in profile['nodes']}
    parent = {child: node['id'] for node in profile['nodes'] for child in node.get('children', ())}

    def key(node_id: int) -> tuple[str, str]:
        frame = nodes[node_id]['callFrame']
        if frame['functionName'] or frame['url'] or node_id not in parent:
            return frame['functionName'] or '(anonymous)', frame['url']
        caller = nodes[parent[node_id]]['callFrame']['functionName'] or '(anonymous)'
        return f'(native called by {caller})', ''

    # Each node's functions on the stack, once each (recursion counts once).
    stacks: dict[int, frozenset[tuple[str, str]]] = {}

    def stack(node_id: int) -> frozenset[tuple[str, str]]:
        path = []
        while node_id is not None and node_id not in stacks:
            path.append(node_id)
            node_id = parent.get(node_id)
        above = stacks[node_id] if node_id is not None else frozenset()
        for each in reversed(path):
            above = stacks[each] = above | {key(each)}
        return above

    self_samples: collections.Counter = collections.Counter()
    on_stack: collections.Counter = collections.Counter()
    for node_id, count in collections.Counter(profile['samples']).items():
        self_samples[key(node_id)] += count
        for function in stack(node_id):
            on_stack[function] += count
    groups: collections.Counter = collections.Counter()
    for (name, url), count in self_samples.items():
        groups[group_of(name, url)] += count
    return {
        'samples': len(profile['samples']),
        'busy': len(profile['samples']) - self_samples[(IDLE, '')],
        'seconds': (profile['endTime'] - profile['startTime']) / 1e6,
        'self': self_samples,
        'total': on_stack,
        'groups': groups,
        'stacks': {node_id: stack(node_id) for node_id in set(profile['samples'])},
        'sampled': collections.Counter(profile['samples']),
    }


def share_matching(summary: dict, pattern: str) -> float:
    """The share of busy samples with a function whose name matches ``pattern``
    (a regular expression) on the stack: the inclusive time of all of them, each
    sample counted once."""
    matches = re.compile(pattern).search
    hits = sum(
        count
        for node_id, count in summary['sampled'].items()
        if any(matches(name) for name, _ in summary['stacks'][node_id])
    )
    return hits / (summary['busy'] or 1)


def print_summary(summary: dict, top: int = 30, requests: int | None = None, focus: list[str] = ()) -> None:
    """Tables of ``summarize``, as shares of the busy samples."""
    samples = summary['busy'] or 1
    per = f', {summary["busy"] / requests:.1f} per request' if requests else ''
    print(
        f'{summary["samples"]} samples of the isolate in {summary["seconds"]:.1f} s, '
        f'{summary["busy"]} busy (not idle){per}; % of busy samples',
    )
    print(f'\n{"self %":>7}  group')
    for group, count in summary['groups'].most_common():
        if group == 'idle':
            continue
        print(f'{100 * count / samples:>7.1f}  {group}')
    for pattern in focus:
        print(f'{100 * share_matching(summary, pattern):>7.1f}  inclusive: functions matching {pattern!r}')
    for title, counts in (('self', summary['self']), ('inclusive', summary['total'])):
        print(f'\ntop {top} by {title} time\n{"self %":>7} {"incl %":>7}  function (file)  [group]')
        shown = [f for f, _ in counts.most_common() if f[0] not in (IDLE, ROOT)]
        for name, url in shown[:top]:
            where = url.rsplit('/', 1)[-1].split('.wasm')[0]
            print(
                f'{100 * summary["self"][(name, url)] / samples:>7.1f} '
                f'{100 * summary["total"][(name, url)] / samples:>7.1f}  '
                f'{name[:120]}{where and f" ({where})"}  [{group_of(name, url)}]',
            )


def main() -> int:
    parser = argparse.ArgumentParser(description='Print the tables of a saved .cpuprofile.')
    parser.add_argument('profile', type=Path)
    parser.add_argument('--top', type=int, default=30)
    parser.add_argument(
        '--focus', action='append', default=[], metavar='REGEX',
        help='also print the inclusive share of the functions matching REGEX (repeatable)',
    )
    args = parser.parse_args()
    print_summary(summarize(json.loads(args.profile.read_text())), args.top, focus=args.focus)
    return 0


if __name__ == '__main__':
    sys.exit(main())
