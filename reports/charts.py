"""The report's charts, drawn with matplotlib's Agg renderer into PNG data: URIs.

Figures are built with ``matplotlib.figure.Figure`` directly (no pyplot), so nothing here
touches a global backend or a display. Each function returns None when it has nothing to draw.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from fer_model.classes import CLASSES

EMOTION_COLORS: dict[str, str] = {
    "angry": "#d62728",
    "disgust": "#6b8e23",
    "fear": "#9467bd",
    "happy": "#f0b400",
    "neutral": "#8c8c8c",
    "sad": "#1f77b4",
    "surprise": "#ff7f0e",
}
DPI = 110
WIDTH_INCHES = 9.0
MAX_LABEL_CHARS = 42

# Folder names and periods are user data: "$" must not start mathtext.
_STYLE = {
    "text.parse_math": False,
    "font.size": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.titleweight": "bold",
    "axes.titlesize": 11,
}


@contextmanager
def _style() -> Iterator[None]:
    with matplotlib.rc_context(_STYLE):
        yield


def _data_uri(figure: Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight", facecolor="white")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _shorten(text: str, limit: int = MAX_LABEL_CHARS) -> str:
    return text if len(text) <= limit else "…" + text[-(limit - 1):]


def emotion_distribution(counts: Mapping[str, int]) -> str | None:
    """Horizontal bars: faces per emotion, with counts and shares."""
    total = sum(counts.values())
    if total == 0:
        return None
    with _style():
        figure = Figure(figsize=(7.0, 3.0))
        axes = figure.add_subplot()
        names = list(reversed(CLASSES))
        values = [counts.get(name, 0) for name in names]
        bars = axes.barh(names, values, color=[EMOTION_COLORS[name] for name in names])
        axes.bar_label(bars, labels=[f"{value:,} ({value / total:.1%})" for value in values], padding=4, fontsize=9)
        axes.set_xlim(0, max(values) * 1.25)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True, steps=[1, 2, 2.5, 5, 10]))
        axes.set_xlabel("faces")
        axes.grid(axis="x", alpha=0.3)
        axes.set_axisbelow(True)
        return _data_uri(figure)


def _stacked_shares(axes, positions: np.ndarray, rows: Sequence[Mapping[str, int]], horizontal: bool) -> None:
    totals = np.array([max(sum(row.get(name, 0) for name in CLASSES), 1) for row in rows], dtype=float)
    start = np.zeros(len(rows))
    for name in CLASSES:
        shares = np.array([row.get(name, 0) for row in rows], dtype=float) / totals * 100
        if horizontal:
            axes.barh(positions, shares, left=start, color=EMOTION_COLORS[name], label=name, height=0.7)
        else:
            axes.bar(positions, shares, bottom=start, color=EMOTION_COLORS[name], label=name, width=0.7)
        start += shares


def _legend_on_top(figure: Figure, axes) -> None:
    handles, labels = axes.get_legend_handles_labels()
    columns = len(labels) if figure.get_figwidth() >= 8 else 4
    figure.legend(handles, labels, loc="outside upper center", ncols=columns, frameon=False, fontsize=9)


def emotions_by_folder(names: Sequence[str], rows: Sequence[Mapping[str, int]]) -> str | None:
    """One 100% bar per folder: the share of each emotion among its faces (folders as given, top first)."""
    if not rows or not any(row.get("faces") for row in rows):
        return None
    with _style():
        figure = Figure(figsize=(WIDTH_INCHES, 1.2 + 0.32 * len(rows)), layout="constrained")
        axes = figure.add_subplot()
        positions = np.arange(len(rows))[::-1]
        _stacked_shares(axes, positions, rows, horizontal=True)
        axes.set_yticks(positions, [f"{_shorten(name)}  ({row['faces']:,})" for name, row in zip(names, rows)])
        axes.set_xlim(0, 100)
        axes.set_xlabel("% of the folder's faces")
        _legend_on_top(figure, axes)
        return _data_uri(figure)


def emotions_over_time(periods: Sequence[str], rows: Sequence[Mapping[str, int]], unit: str) -> str | None:
    """One 100% column per month (or year) of the photos' dates, with its number of faces above it."""
    if not rows:
        return None
    with _style():
        # A few periods get a narrower chart, not a few wide bars lost in white space.
        width = min(WIDTH_INCHES, max(6.0, 3.0 + 0.45 * len(rows)))
        figure = Figure(figsize=(width, 3.4), layout="constrained")
        axes = figure.add_subplot()
        positions = np.arange(len(rows))
        _stacked_shares(axes, positions, rows, horizontal=False)
        for position, row in zip(positions, rows):
            axes.annotate(f"{row['faces']:,}", (position, 100), xytext=(0, 3), textcoords="offset points",
                          ha="center", fontsize=8, color="#555555")
        axes.set_xticks(positions, list(periods), rotation=45 if len(rows) > 8 else 0, ha="right" if len(rows) > 8 else "center")
        axes.set_xlim(-0.6, max(len(rows), 4) - 0.4)
        axes.set_ylim(0, 108)
        axes.set_ylabel("% of the faces")
        axes.set_xlabel(unit)
        _legend_on_top(figure, axes)
        return _data_uri(figure)


def confidence_histogram(confidences: Mapping[str, Sequence[float]]) -> str | None:
    """Histogram of the classifier's confidence (its top probability), stacked by the emotion it gave."""
    everything = [value for values in confidences.values() for value in values]
    if not everything:
        return None
    with _style():
        figure = Figure(figsize=(WIDTH_INCHES, 3.2), layout="constrained")
        axes = figure.add_subplot()
        names = [name for name in CLASSES if confidences.get(name)]
        axes.hist([confidences[name] for name in names], bins=np.linspace(0, 1, 21), stacked=True,
                  color=[EMOTION_COLORS[name] for name in names], label=names, edgecolor="white", linewidth=0.5)
        median = float(np.median(everything))
        axes.axvline(median, color="#333333", linestyle="--", linewidth=1)
        axes.annotate(f"median {median:.2f}", (median, 1), xycoords=("data", "axes fraction"), xytext=(4, -12),
                      textcoords="offset points", fontsize=9)
        axes.set_xlim(0, 1)
        axes.set_xlabel("confidence (probability of the emotion given)")
        axes.set_ylabel("faces")
        axes.yaxis.set_major_locator(MaxNLocator(integer=True, steps=[1, 2, 2.5, 5, 10]))
        axes.grid(axis="y", alpha=0.3)
        axes.set_axisbelow(True)
        _legend_on_top(figure, axes)
        return _data_uri(figure)
