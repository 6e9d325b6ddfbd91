"""Summaries of the per-round records: the table on stdout, the JSON file, the
ratios of this worker to each reference and to its earlier build, a Markdown
table for the README, and a chart."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import textwrap
import time
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use('Agg')  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

OURS = ('workerd', 'workerd-before', 'wrangler-dev')
# The floors, workloads 1-3 only: a minimal JavaScript Worker and object
# (bench/floor/), and the same with this worker's design (bench/floor_design/).
FLOOR = 'floor'
FLOOR_DESIGN = 'floor-design'
# Each floor and how the Markdown table names its multiples.
FLOORS = {FLOOR: "the floor's", FLOOR_DESIGN: "floor-design's"}
REFERENCES = (FLOOR, FLOOR_DESIGN, 'academy-memory', 'academy-redis')
# (after, before): this build against the earlier one, when the run has it.
BEFORE_AFTER = ('workerd', 'workerd-before')
# What the worker's design costs on its own: its floor against the plain floor.
DESIGN_OVER_FLOOR = (FLOOR_DESIGN, FLOOR)
LABELS = {
    'workerd': 'worker (workerd)',
    FLOOR: 'floor (JS Worker + object)',
    FLOOR_DESIGN: 'floor-design (JS, the worker\'s design)',
    'workerd-before': 'earlier build (workerd)',
    'wrangler-dev': 'worker (wrangler dev)',
    'academy-memory': 'academy (memory)',
    'academy-redis': 'academy (Redis)',
}
MESSAGE_METRICS = ('throughput', 'p50_ms', 'p99_ms', 'server_cpu_s_per_1k', 'client_cpu_s_per_1k', 'cpu_steal_pct')
REGISTRY_OPS = ('register', 'status', 'discover', 'discover_all')


# ------------------------------------------------------------------ machine


def machine() -> dict[str, Any]:
    cpu = next(
        (line.split(':', 1)[1].strip() for line in Path('/proc/cpuinfo').read_text().splitlines()
         if line.startswith('model name')),
        platform.processor() or 'unknown',
    )
    mem_kib = next(
        int(line.split()[1]) for line in Path('/proc/meminfo').read_text().splitlines()
        if line.startswith('MemTotal:')
    )
    return {
        'date': time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()),
        'nproc': len(os.sched_getaffinity(0)),
        'cpu_model': cpu,
        'memory_gib': round(mem_kib / 2**20, 1),
        'kernel': platform.release(),
        'python': platform.python_version(),
        'node': _version(['node', '--version']),
    }


def _version(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return 'unknown'


# ---------------------------------------------------------------- summaries


def median_range(values: list[float | None]) -> dict[str, float | None]:
    """Median over rounds and the spread as min and max."""
    present = [v for v in values if v is not None]
    if not present:
        return {'median': None, 'min': None, 'max': None}
    return {'median': statistics.median(present), 'min': min(present), 'max': max(present)}


def summarize(records: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """{workload: {target: {metric: median/min/max, 'rounds': n}}}."""
    grouped: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for record in records:
        grouped.setdefault(record['workload'], {}).setdefault(record['target'], []).append(record)
    summary: dict[str, dict[str, dict[str, Any]]] = {}
    for workload, by_target in grouped.items():
        for target, runs in by_target.items():
            entry: dict[str, Any] = {'rounds': len(runs)}
            for metric in MESSAGE_METRICS:
                entry[metric] = median_range([r.get(metric) for r in runs])
            for op in REGISTRY_OPS:
                if any(op in r.get('operations', {}) for r in runs):
                    entry[op] = {
                        'p50_ms': median_range([r['operations'][op]['p50_ms'] for r in runs]),
                        'p99_ms': median_range([r['operations'][op]['p99_ms'] for r in runs]),
                        'samples': sum(r['operations'][op]['samples'] for r in runs),
                    }
            summary.setdefault(workload, {})[target] = entry
    return summary


def ratios(summary: dict[str, dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """ours / reference (and this build / the earlier one, floor-design / the
    floor) of the medians: throughput (>1: ours faster), p50 and CPU per
    message (<1: ours faster / cheaper)."""
    pairs = [(ours, reference) for ours in OURS for reference in REFERENCES] + [BEFORE_AFTER, DESIGN_OVER_FLOOR]
    out: dict[str, dict[str, Any]] = {}
    for workload, by_target in summary.items():
        for ours, reference in pairs:
            if ours not in by_target or reference not in by_target:
                continue
            a, b = by_target[ours], by_target[reference]
            row: dict[str, Any] = {}
            for metric in ('throughput', 'p50_ms', 'server_cpu_s_per_1k'):
                row[metric] = _ratio(a[metric]['median'], b[metric]['median'])
            for op in REGISTRY_OPS:
                if op in a and op in b:
                    row[op + '_p50_ms'] = _ratio(a[op]['p50_ms']['median'], b[op]['p50_ms']['median'])
            out.setdefault(workload, {})[f'{ours} / {reference}'] = row
    return out


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


# ------------------------------------------------------------------- output


def _num(value: float | str | None, digits: int = 1) -> str:
    if value is None or isinstance(value, str):
        return 'n/a' if value is None else value
    if abs(value) >= 100:
        return f'{value:.0f}'
    return f'{value:.{digits}f}'


def _cell(stat: dict[str, float | None], digits: int = 1) -> str:
    """median [min–max]"""
    if stat['median'] is None:
        return 'n/a'
    return f'{_num(stat["median"], digits)} [{_num(stat["min"], digits)}-{_num(stat["max"], digits)}]'


def print_table(
    summary: dict[str, dict[str, dict[str, Any]]],
    costs: dict[str, Any],
    listen_costs: dict[str, Any],
) -> None:
    print('\nmedian over rounds [min-max]; CPU = seconds of CPU per 1,000 delivered messages;')
    print('steal % = CPU time the hypervisor gave to other guests during the run (noise)')
    head = (
        f'{"workload":26} {"target":15} {"msg/s":>17} {"p50 ms":>17} {"p99 ms":>17} {"server CPU":>17} '
        f'{"client CPU":>17} {"steal %":>8}'
    )
    print(head)
    print('-' * len(head))
    for workload, by_target in summary.items():
        if workload.startswith('4 '):
            continue
        for target, e in by_target.items():
            print(
                f'{workload:26} {target:15} {_cell(e["throughput"], 0):>17} {_cell(e["p50_ms"], 2):>17} '
                f'{_cell(e["p99_ms"], 2):>17} {_cell(e["server_cpu_s_per_1k"], 2):>17} '
                f'{_cell(e["client_cpu_s_per_1k"], 2):>17} {_num(e["cpu_steal_pct"]["median"], 0):>8}',
            )
    print('\nregistry: p50 ms, median over rounds [min-max] (samples)')
    head = f'{"workload":22} {"target":15} ' + ' '.join(f'{op:>24}' for op in REGISTRY_OPS)
    print(head)
    print('-' * len(head))
    for workload, by_target in summary.items():
        if not workload.startswith('4 '):
            continue
        for target, e in by_target.items():
            cells = [
                f'{_cell(e[op]["p50_ms"], 2)} ({e[op]["samples"]})' if op in e else 'n/a' for op in REGISTRY_OPS
            ]
            print(f'{workload:22} {target:15} ' + ' '.join(f'{c:>24}' for c in cells))
    for target, cost in costs.items():
        calls, rows = cost['object_calls_per_msg'], cost['rows_written_per_msg']
        if calls == 'n/a':
            print(f'\ncost {target}: object calls and rows written per message: n/a (no cost headers)')
        else:
            print(
                f'\ncost {target}: {calls:.2f} Durable Object calls and {rows:.2f} SQLite rows written '
                f'per delivered message (PUT /message + GET /message)',
            )
    for target, cost in listen_costs.items():
        sends = (
            f'{cost["send_object_calls_per_msg"]:.2f} calls and {cost["send_rows_written_per_msg"]:.2f} rows '
            'written by the sends'
        )
        if cost['object_calls_per_msg'] == 'n/a':
            print(f'cost {target} over a listen stream, per message: n/a (no isolate header); {sends}')
        else:
            print(
                f'cost {target} over a listen stream, per message: {cost["object_calls_per_msg"]:.2f} object calls '
                f'(counting at most one confirmation per message on the socket) and {cost["rows_written_per_msg"]:.2f} rows written; {sends}',
            )


def print_idle(idle: dict[str, dict[str, Any]]) -> None:
    """Workload 5, one line per target."""
    head = (
        f'{"target":15} {"wake-ups/listener-h":>20} {"objects slept":>14} {"server CPU s/listener-h":>24}  '
        'object awake'
    )
    print(head)
    print('-' * len(head))
    for target, e in idle.items():
        slept = 'n/a' if e['objects_slept'] == 'n/a' else f'{e["objects_slept"]} of {e["listeners"]}'
        status = 'FAIL' if e['errors'] else 'ok'
        print(
            f'{target:15} {_num(e["wake_ups_per_listener_hour"]):>20} {slept:>14} '
            f'{_num(e["server_cpu_s_per_listener_hour"], 2):>24}  {e["object_awake"]}  [{status}]',
        )
        for error in e['errors'][:5]:
            print(f'    ERROR {error}')


def print_ratios(table: dict[str, dict[str, Any]]) -> None:
    print('\nratios, this worker (or floor-design) / reference (medians): throughput (>1 faster), '
          'p50 and server CPU (<1 better)')
    for workload, rows in table.items():
        for pair, r in rows.items():
            if workload.startswith('4 '):
                cells = '  '.join(f'{op} {_num(r.get(op + "_p50_ms"), 2)}' for op in REGISTRY_OPS)
            else:
                cells = (
                    f'throughput {_num(r["throughput"], 2)}  p50 {_num(r["p50_ms"], 2)}  '
                    f'CPU/msg {_num(r["server_cpu_s_per_1k"], 2)}'
                )
            print(f'  {workload:26} {pair:30} {cells}')


def markdown(
    summary: dict[str, dict[str, dict[str, Any]]],
    targets: list[str],
    idle: dict[str, dict[str, Any]],
    costs: dict[str, Any],
    listen_costs: dict[str, Any],
) -> str:
    """The README table: one column per target."""
    cols = [t for t in LABELS if t in targets]
    lines = [
        '| workload | ' + ' | '.join(LABELS[t] for t in cols) + ' |',
        '|---|' + '---|' * len(cols),
    ]

    def row(label: str, cell) -> None:
        lines.append(f'| {label} | ' + ' | '.join(cell(t) for t in cols) + ' |')

    for workload, by_target in summary.items():
        if workload.startswith('4 '):
            continue
        row(
            f'{workload}: msg/s (p50 / p99 ms)',
            lambda t, w=by_target: (
                f'{_num(w[t]["throughput"]["median"], 0)} ({_num(w[t]["p50_ms"]["median"], 1)} / '
                f'{_num(w[t]["p99_ms"]["median"], 1)})' if t in w else 'n/a'
            ),
        )
    for workload, by_target in summary.items():
        if workload.startswith('4 '):
            continue
        row(
            f'{workload}: server CPU s / 1k msg',
            lambda t, w=by_target: _num(w[t]['server_cpu_s_per_1k']['median'], 2) if t in w else 'n/a',
        )
    for floor, multiples in FLOORS.items():
        for workload, by_target in summary.items():
            if floor not in by_target:
                continue
            row(
                f'{workload}: server CPU / p50, × {multiples}',
                lambda t, w=by_target, floor=floor: ' / '.join(
                    _num(_ratio(w[t][metric]['median'], w[floor][metric]['median']), 2)
                    for metric in ('server_cpu_s_per_1k', 'p50_ms')
                ) if t in w else 'n/a',
            )
    for workload, by_target in summary.items():
        if not workload.startswith('4 '):
            continue
        row(
            f'{workload}: register / status / discover / discover all, p50 ms',
            lambda t, w=by_target: ' / '.join(
                _num(w[t][op]['p50_ms']['median'], 1) if t in w and op in w[t] else 'n/a' for op in REGISTRY_OPS
            ),
        )
    if idle:
        any_idle = next(iter(idle.values()))
        label = f'5 idle listeners ({any_idle["listeners"]} for {any_idle["idle_s"]:.0f} s)'
        row(
            f'{label}: object wake-ups / listener-hour',
            lambda t: _num(idle[t]['wake_ups_per_listener_hour']) if t in idle else 'n/a',
        )
        row(
            f'{label}: objects that slept',
            lambda t: 'n/a' if t not in idle or idle[t]['objects_slept'] == 'n/a'
            else f'{idle[t]["objects_slept"]} of {idle[t]["listeners"]}',
        )
        row(
            f'{label}: server CPU s / listener-hour',
            lambda t: _num(idle[t]['server_cpu_s_per_listener_hour'], 2) if t in idle else 'n/a',
        )
    row(
        'cost per message, send + `GET /message`: object calls / rows written',
        lambda t: ' / '.join(_num(costs[t][k], 2) for k in ('object_calls_per_msg', 'rows_written_per_msg'))
        if t in costs else 'n/a',
    )
    row(
        'cost per message over a listen stream: object calls / rows written',
        lambda t: ' / '.join(_num(listen_costs[t][k], 2) for k in ('object_calls_per_msg', 'rows_written_per_msg'))
        if t in listen_costs else 'n/a',
    )
    return '\n'.join(lines) + '\n'


def chart(summary: dict[str, dict[str, dict[str, Any]]], targets: list[str], path: Path, title: str) -> None:
    """Server CPU per 1,000 messages and p50 latency of workloads 1-3, one bar per
    target (median over rounds, min-max as the error bar), as a PNG."""
    workloads = [w for w in summary if not w.startswith('4 ')]
    cols = [t for t in LABELS if t in targets]
    fig, axes = plt.subplots(1, 2, figsize=(14, 5.5))
    width = 0.8 / max(1, len(cols))
    for ax, metric, label in (
        (axes[0], 'server_cpu_s_per_1k', 'server CPU s per 1,000 messages'),
        (axes[1], 'p50_ms', 'p50 latency, ms (log scale)'),
    ):
        for i, target in enumerate(cols):
            bars = [_bar(summary[w].get(target, {}).get(metric)) for w in workloads]
            positions = [x + (i - (len(cols) - 1) / 2) * width for x in range(len(workloads))]
            ax.bar(
                positions,
                [median for median, _, _ in bars],
                width,
                yerr=[[below for _, below, _ in bars], [above for _, _, above in bars]],
                capsize=2,
                label=LABELS[target],
            )
        ax.set_xticks(range(len(workloads)))
        ax.set_xticklabels([textwrap.fill(w, 16, break_long_words=False) for w in workloads], fontsize=8)
        ax.set_ylabel(label)
        ax.grid(axis='y', alpha=0.3)
    axes[1].set_yscale('log')
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc='lower center', ncol=len(cols), fontsize=9)
    fig.suptitle(f'Message workloads 1-3, median over rounds (bars: min-max); {title}')
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _bar(stat: dict[str, float | None] | None) -> tuple[float, float, float]:
    """(median, median - min, max - median); zeros where nothing was measured."""
    if not stat or stat['median'] is None:
        return 0.0, 0.0, 0.0
    median = stat['median']
    return median, median - (stat['min'] or median), (stat['max'] or median) - median
