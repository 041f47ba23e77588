"""PNG plots of a benchmark: quality vs speedup with the Pareto front, and measured vs predicted speedup per γ.

Figures are drawn on matplotlib's Agg canvas directly (no pyplot state, no display needed).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .report import METRIC_NAMES


def write_plots(rows: list[dict], out_dir: Path) -> dict[str, list[str]]:
    """{task: [file names]} of the plots written into `out_dir`."""
    written = defaultdict(list)
    for task in dict.fromkeys(row["task"] for row in rows):
        task_rows = [row for row in rows if row["task"] == task]
        for name, draw in (
            (f"quality_vs_speedup_{task}.png", _quality_vs_speedup),
            (f"speedup_by_gamma_{task}.png", _speedup_by_gamma),
        ):
            figure = draw(task, task_rows)
            if figure is not None:
                FigureCanvasAgg(figure).print_png(str(out_dir / name))
                written[task].append(name)
    return dict(written)


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The (speedup, quality) points no other point beats on both, by increasing speedup."""
    front, best_quality = [], float("-inf")
    for speed, quality in sorted(points, key=lambda p: (-p[0], -p[1])):
        if quality > best_quality:
            front.append((speed, quality))
            best_quality = quality
    return front[::-1]


def _quality_vs_speedup(task: str, rows: list[dict]) -> Figure | None:
    rows = [row for row in rows if row["speedup"]["total"] is not None]
    if not rows:
        return None
    figure = Figure(figsize=(8, 5.5), layout="constrained")
    axes = figure.subplots()
    front = pareto_front([(row["speedup"]["total"], row["quality"]) for row in rows])
    for family in dict.fromkeys(row["family"] for row in rows):
        members = [row for row in rows if row["family"] == family]
        axes.scatter([r["speedup"]["total"] for r in members], [r["quality"] for r in members], label=family, s=28)
    for row in rows:  # names on the front and the two baselines only: exact methods share one quality and would pile up
        point = (row["speedup"]["total"], row["quality"])
        if point in front or row["family"] in ("ar", "small"):
            axes.annotate(row["label"], point, fontsize=7, xytext=(3, 3), textcoords="offset points")
    axes.step(
        [p[0] for p in front],
        [p[1] for p in front],
        where="post",
        color="grey",
        linestyle="--",
        linewidth=1,
        label="Pareto front",
    )
    axes.axvline(1.0, color="lightgrey", linewidth=0.8)
    axes.set_xlabel("speedup over Vanilla (large), total time")
    axes.set_ylabel(METRIC_NAMES[rows[0]["metric"]])
    axes.set_title(f"{task}: quality vs speedup")
    axes.legend(fontsize=7)
    return figure


def _speedup_by_gamma(task: str, rows: list[dict]) -> Figure | None:
    series = defaultdict(list)
    for row in rows:
        setting = row["setting"]
        if setting["method"] == "speculative" and isinstance(setting["gamma"], int) and row["speedup"]["total"]:
            draft = setting["drafter"] if setting["drafter"] != "model" else setting["model"]
            series[f"{draft} T={setting['temperature']:g}"].append(row)
    if not series:
        return None
    figure = Figure(figsize=(7, 4.5), layout="constrained")
    axes = figure.subplots()
    for index, (name, members) in enumerate(series.items()):
        members.sort(key=lambda row: row["setting"]["gamma"])
        color = f"C{index % 10}"
        gammas = [row["setting"]["gamma"] for row in members]
        axes.plot(
            gammas, [row["speedup"]["total"] for row in members], marker="o", color=color, label=f"{name} measured"
        )
        predicted = [
            (row["setting"]["gamma"], row["mechanism"]["predicted_speedup"])
            for row in members
            if row["mechanism"]["predicted_speedup"] is not None
        ]
        if predicted:
            axes.plot(*zip(*predicted), marker="x", linestyle="--", color=color, label=f"{name} predicted")
    axes.axhline(1.0, color="lightgrey", linewidth=0.8)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel("γ (draft tokens per target pass)")
    axes.set_ylabel("speedup over Vanilla (large)")
    axes.set_title(f"{task}: measured vs predicted speedup")
    axes.legend(fontsize=7)
    return figure
