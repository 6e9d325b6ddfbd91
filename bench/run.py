"""Benchmark: this worker (workerd direct and through wrangler dev) against
academy's own exchange (in-memory, and Redis when redis-server is installed),
same workloads through academy-py's client, targets interleaved round by round.

    python bench/run.py            # full: several rounds, 100 and 10,000 agents
    python bench/run.py --smoke    # one tiny round: a CI check that it all works

Exits non-zero if any workload loses, duplicates or reorders a message, or a
target fails to start."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import targets as targets_module  # noqa: E402
import workloads  # noqa: E402

FULL = {'rounds': 3, 'round_trips': 300, 'pairs': 400, 'fan_in_each': 40, 'populations': (100, 10_000),
        'registry_samples': 30, 'cost_messages': 100}
SMOKE = {'rounds': 1, 'round_trips': 20, 'pairs': 24, 'fan_in_each': 3, 'populations': (100,),
         'registry_samples': 5, 'cost_messages': 10}


def plan(settings: dict) -> list[tuple[str, object]]:
    """(label, coroutine factory taking the url) for one round, in order."""
    steps = [('1 self round trip', lambda url: workloads.self_round_trip(url, settings['round_trips']))]
    for k in (1, 8, 32):
        steps.append((f'2 request/response K={k}',
                      lambda url, k=k: workloads.request_response(url, settings['pairs'], k)))
    steps.append(('3 fan-in 16 senders', lambda url: workloads.fan_in(url, 16, settings['fan_in_each'])))
    return steps


def run_round(target: targets_module.Target, settings: dict) -> list[dict]:
    rows = []
    for label, factory in plan(settings):
        cpu_before = target.cpu_seconds()
        result = asyncio.run(factory(target.url))
        cpu = target.cpu_seconds() - cpu_before
        row = result.summary()
        row['cpu_s_per_1000_msg'] = 1000 * cpu / result.messages if result.messages else None
        rows.append(row)
    return rows


def machine() -> dict:
    model = next((line.split(':', 1)[1].strip() for line in Path('/proc/cpuinfo').read_text().splitlines()
                  if line.startswith('model name')), platform.processor())
    memory_kb = next(int(line.split()[1]) for line in Path('/proc/meminfo').read_text().splitlines()
                     if line.startswith('MemTotal'))
    return {'date': time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()), 'cores': os.cpu_count(),
            'cpu': model, 'memory_gib': round(memory_kb / 2**20, 1)}


def median_spread(values: list[float | None]) -> tuple[float | None, float | None]:
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return statistics.median(values), (max(values) - min(values))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument('--smoke', action='store_true')
    args = parser.parse_args()
    settings = SMOKE if args.smoke else FULL
    with_redis = shutil.which('redis-server') is not None
    if not with_redis:
        print('note: redis-server is not installed; the academy-redis target is left out')
    factories = targets_module.all_targets(with_redis)
    started = []
    try:
        for factory in factories:
            target = factory()
            started.append(target)
            target.start()
        # rows[target][workload] = list of summaries, one per round
        rows: dict[str, dict[str, list[dict]]] = {t.name: {} for t in started}
        for round_index in range(settings['rounds']):
            order = started if round_index % 2 == 0 else list(reversed(started))
            for target in order:
                print(f'round {round_index + 1}: {target.name}', flush=True)
                for row in run_round(target, settings):
                    rows[target.name].setdefault(row['workload'], []).append(row)
        registry = {}
        for population in settings['populations']:
            for target in started:
                print(f'registry N={population}: {target.name}', flush=True)
                registry.setdefault(target.name, []).append(
                    asyncio.run(workloads.registry(target.url, population, settings['registry_samples'])).summary())
        costs = {t.name: asyncio.run(workloads.cost_per_message(t.url, settings['cost_messages']))
                 for t in started if t.cost_headers}
    finally:
        for target in started:
            target.stop()
    return report(rows, registry, costs, smoke=args.smoke)


def report(rows, registry, costs, smoke: bool) -> int:
    summary: dict = {'machine': machine(), 'mode': 'smoke' if smoke else 'full', 'workloads': {},
                     'registry': registry, 'cost': costs}
    errors = []
    print(f"\n{'workload':28} {'target':15} {'msg/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'CPU s/1k msg':>13}  (median, spread)")
    for target, by_workload in rows.items():
        for workload, runs in by_workload.items():
            for run in runs:
                errors += [f'{target} {workload}: {e}' for e in run['errors']]
            entry = {}
            for key in ('throughput_msg_s', 'p50_ms', 'p99_ms', 'cpu_s_per_1000_msg'):
                entry[key], entry[key + '_spread'] = median_spread([r[key] for r in runs])
            summary['workloads'].setdefault(workload, {})[target] = entry
    for workload, by_target in summary['workloads'].items():
        for target, e in by_target.items():
            fmt = lambda v, spec: (format(v, spec) if v is not None else 'n/a')  # noqa: E731
            print(f"{workload:28} {target:15} {fmt(e['throughput_msg_s'], '9.0f')} {fmt(e['p50_ms'], '8.2f')} "
                  f"{fmt(e['p99_ms'], '8.2f')} {fmt(e['cpu_s_per_1000_msg'], '13.3f')}  "
                  f"(±{fmt(e['throughput_msg_s_spread'], '.0f')} msg/s)")
    print(f"\n{'registry':28} {'target':15} {'register':>9} {'status':>8} {'discover':>9}  (p50 ms)")
    for target, runs in registry.items():
        for run in runs:
            errors += [f'{target} {run["workload"]}: {e}' for e in run['errors']]
            print(f"{run['workload']:28} {target:15} {run['register_p50_ms']:9.2f} {run['status_p50_ms']:8.2f} "
                  f"{run['discover_p50_ms']:9.2f}")
    for target, cost in costs.items():
        print(f"cost {target}: {cost['object_calls_per_msg']:.2f} object calls and "
              f"{cost['rows_written_per_msg']:.2f} SQLite rows written per delivered message (send + GET /message)")
    ratios = {}
    for workload, by_target in summary['workloads'].items():
        for ours in ('workerd', 'wrangler-dev'):
            for reference in ('academy-memory', 'academy-redis'):
                if ours in by_target and reference in by_target:
                    a, b = by_target[ours], by_target[reference]
                    ratio = lambda x, y: (x / y) if x and y else None  # noqa: E731
                    ratios[f'{workload} | {ours} / {reference}'] = {
                        'throughput': ratio(a['throughput_msg_s'], b['throughput_msg_s']),
                        'p50': ratio(a['p50_ms'], b['p50_ms']),
                        'cpu_per_msg': ratio(a['cpu_s_per_1000_msg'], b['cpu_s_per_1000_msg']),
                    }
    summary['ratios'] = ratios
    print('\nratios (ours / reference): throughput, p50, CPU per message')
    for key, r in ratios.items():
        fmt = lambda v: f'{v:.2f}' if v is not None else 'n/a'  # noqa: E731
        print(f"  {key:70} {fmt(r['throughput'])}  {fmt(r['p50'])}  {fmt(r['cpu_per_msg'])}")
    out = Path(__file__).resolve().parent / 'results' / ('smoke.json' if smoke else 'latest.json')
    out.parent.mkdir(exist_ok=True)
    summary['errors'] = errors
    out.write_text(json.dumps(summary, indent=2))
    print(f'\nwrote {out}')
    if errors:
        print('\nDELIVERY ERRORS:\n  ' + '\n  '.join(errors[:50]))
        return 1
    print('every message arrived exactly once, in per-sender order')
    return 0


if __name__ == '__main__':
    sys.exit(main())
