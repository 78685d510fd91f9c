"""Benchmark: the report page, the comparison page and the terminal report at every size.

For the seed's examples and Keras Applications models up to NASNetLarge (stored configs): the
report page's size and its render time (``render_report_html``: plots, graph drawing, tables,
no cache), the terminal report's render time (``print_report`` into an 80-column console),
and the comparison page of pairs of large models. Medians of N renders in this process after
one warm-up render (matplotlib's first figure pays for its imports); the analysis itself is
not timed (``bench_engine`` measures it).

Goals (issue: reports that read right at every size): a NASNetLarge-size report page under
2 MB and rendered in under 3 s.

Run::

    python -m bench.bench_pages            # 5 renders per page
    python -m bench.bench_pages --quick    # 2 renders, fewer models
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.analysis import analyze  # noqa: E402
from tests.fixtures.load import load_config, named_configs  # noqa: E402

MODELS = named_configs("example1", "example3", "resnet50", "inceptionv3", "nasnetmobile", "efficientnetb7",
                       "nasnetlarge")
QUICK = ("example3", "resnet50", "nasnetlarge")
PAIRS = [("example1", "example3"), ("resnet50", "inceptionv3"), ("nasnetmobile", "nasnetlarge")]
PAGE_BYTES_GOAL = 2_000_000
RENDER_S_GOAL = 3.0


def _median_s(render: Callable[[], Any], repeats: int) -> tuple[float, float, Any]:
    """Median wall and CPU seconds of ``repeats`` renders (CPU time is what a shared, loaded
    machine does not inflate), and the last output."""
    out = render()  # warm-up
    wall, cpu = [], []
    for _ in range(repeats):
        started, started_cpu = time.perf_counter(), time.process_time()
        out = render()
        wall.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
    return statistics.median(wall), statistics.median(cpu), out


def _terminal(report: dict[str, Any]) -> str:
    from rich.console import Console

    from app.reports.cli import print_report

    buffer = io.StringIO()
    print_report(report, Console(file=buffer, width=80, force_terminal=False, color_system=None))
    return buffer.getvalue()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from app.reports.compare import render_comparison_html
    from app.reports.html import render_report_html

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    repeats = 2 if args.quick else 5
    names = [name for name in MODELS if not args.quick or name in QUICK]
    reports = {name: analyze(load_config(MODELS[name]), name=name) for name in names}
    results: dict[str, Any] = {"repeats": repeats, "pages": {}, "comparisons": {}}
    print(f"{'model':<15} {'layers':>6} {'page':>9} {'render wall / CPU (medians)':>28} {'terminal 80 col':>16}")
    for name in names:
        report = reports[name]
        render_s, render_cpu_s, page = _median_s(lambda report=report: render_report_html(report), repeats)
        terminal_s, _, text = _median_s(lambda report=report: _terminal(report), repeats)
        widest = max(len(line) for line in text.splitlines())
        entry = {"layers": len(report["layers"]), "page_bytes": len(page.encode()), "render_s": render_s,
                 "render_cpu_s": render_cpu_s, "terminal_s": terminal_s, "terminal_widest": widest}
        results["pages"][name] = entry
        print(f"{name:<15} {entry['layers']:>6} {entry['page_bytes'] / 1e6:>7.2f} MB {render_s:>16.2f} s / "
              f"{render_cpu_s:.2f} s {terminal_s:>14.2f} s")
    for a, b in PAIRS:
        if a in reports and b in reports:
            seconds, cpu_s, page = _median_s(
                lambda a=a, b=b: render_comparison_html(reports[a], reports[b], label_a=a, label_b=b), repeats)
            results["comparisons"][f"{a}-{b}"] = {"page_bytes": len(page.encode()), "render_s": seconds,
                                                  "render_cpu_s": cpu_s}
            print(f"comparison {a} vs {b}: {len(page.encode()) / 1e6:.2f} MB, render median {seconds:.2f} s "
                  f"wall, {cpu_s:.2f} s CPU")
    large = results["pages"].get("nasnetlarge")
    if large:
        print(f"NASNetLarge report page: {large['page_bytes'] / 1e6:.2f} MB (goal < 2 MB: "
              f"{'met' if large['page_bytes'] < PAGE_BYTES_GOAL else 'NOT met'}), render median "
              f"{large['render_s']:.2f} s wall, {large['render_cpu_s']:.2f} s CPU (goal < 3 s: "
              f"{'met' if large['render_s'] < RENDER_S_GOAL else 'NOT met'})")
    widest = max(entry["terminal_widest"] for entry in results["pages"].values())
    print(f"terminal report: widest line {widest} columns of 80 (goal <= 80: {'met' if widest <= 80 else 'NOT met'})")
    return results


if __name__ == "__main__":
    main()
