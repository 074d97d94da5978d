"""What people see, all of it on stderr through rich: progress, the summary table, warnings.

stdout is left to the document alone, so ``classweights scan masks/ > weights.json`` and
``| jq .weights`` always get exactly one document. The table, the warnings and a closing
line come after the document, so that in a terminal they are what stays on screen.
"""

from __future__ import annotations

import math
import textwrap
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from .checks import Violation
from .errors import one_line, plural
from .report import left_out_parts
from .scan import Progress as ProgressCallback

#: Above this many classes the table lists only the classes that occur.
TABLE_ALL_CLASSES = 64

#: The share bar: this many cells for shares from 10^-SHARE_DECADES to 1, on a log scale, so
#: that a class of 0.01% still shows and the imbalance is seen, not read.
SHARE_BAR_WIDTH, SHARE_DECADES = 12, 6

#: How often the bar redraws (spinner, elapsed time) while a task of many masks runs.
REFRESH_PER_SECOND = 8


def share_bar(share: float) -> str:
    """Return a bar whose length is the share's order of magnitude: one cell per
    ``SHARE_DECADES / SHARE_BAR_WIDTH`` decades above 10^-SHARE_DECADES, one cell at least."""
    if share <= 0:
        return ""
    cells = round(SHARE_BAR_WIDTH * (1 + math.log10(share) / SHARE_DECADES))
    return "█" * min(SHARE_BAR_WIDTH, max(1, cells))


def wrapped_violations(violations: Sequence[Violation], closing: str, width: int) -> str:
    """Return ``check``'s text for a terminal ``width`` columns wide: each violation wrapped at
    word boundaries, its example files one per line below it, indented; then ``closing``.

    Only for a terminal: in a pipe or a file the text stays one line per violation (for grep).
    """
    width = max(width, 20)

    def wrap(text: str, indent: str, more: str) -> list[str]:
        return textwrap.wrap(
            one_line(text),
            width,
            initial_indent=indent,
            subsequent_indent=more,
            break_long_words=False,  # a path is never cut in two
            break_on_hyphens=False,
        )

    lines = []
    for violation in violations:
        lines += wrap(f"{violation.rule}: {violation.message}", "", "    ")
        for path, detail in violation.examples:
            lines += wrap(f"{path} ({detail})", "  ", "      ")
    return "\n".join([*lines, closing]) + "\n"


class _CountColumn(ProgressColumn):
    """``done/total masks``; the total is kept in a field, so that the bar pulses (total
    None) until the first masks are counted, rather than sit at 0."""

    def render(self, task: Task) -> Text:
        total = task.fields.get("masks")
        return Text(f"{task.completed:,.0f}/{total:,} masks" if total else "", "progress.download")


class _RateColumn(ProgressColumn):
    """Masks a second since the start: rich's own speed divides by the time between the
    last few updates, which on the first two tasks (finished together) is next to nothing."""

    def render(self, task: Task) -> Text:
        rate = task.completed / task.elapsed if task.completed and task.elapsed else None
        return Text(f"{rate:,.0f} masks/s" if rate else "", style="progress.data.speed")


class Display:
    """The stderr side of one command (a ``-q`` run has none: see `cli`)."""

    def __init__(self) -> None:
        self.console = Console(stderr=True)
        self._pending: list[str] = []
        self._scanned: tuple[int, float] | None = None  # masks, seconds

    def warn(self, message: str) -> None:
        """Keep a warning for `flush`: it is shown after the document and the table."""
        self._pending.append(message)

    def flush(self) -> None:
        """Show the warnings kept so far, each wrapped at word boundaries; a message of parts
        joined by `` | `` (one per value, with example files) gets a line per part."""
        for message in self._pending:
            first, *rest = message.split(" | ")
            text = Text.assemble(("warning: ", "yellow"), first)
            for part in rest:
                text.append("\n  " + part)
            # Wrapped to the terminal's width; in a log, one line a message, for grep.
            self.console.print(text, highlight=False, soft_wrap=not self.console.is_terminal)
        self._pending = []

    def note(self, message: str) -> None:
        """Say something that is neither a warning nor part of the table."""
        self.console.print(escape(message), highlight=False, soft_wrap=True)

    @contextmanager
    def progress(self) -> Iterator[ProgressCallback]:
        """Yield a progress callback: a bar with a spinner and the elapsed time when stderr is
        a terminal; in any case it keeps the count and the time for `done`."""
        start = time.perf_counter()
        masks = 0
        bar = None
        if self.console.is_terminal:
            bar = Progress(
                SpinnerColumn(),
                TextColumn("scanning"),
                BarColumn(),
                _CountColumn(),
                _RateColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=self.console,
                transient=True,
                auto_refresh=True,
                refresh_per_second=REFRESH_PER_SECOND,
                redirect_stdout=False,
                redirect_stderr=False,
            )
        task = bar.add_task("scan", total=None, masks=0) if bar else None

        def update(done: int, total: int) -> None:
            nonlocal masks
            masks = done
            if bar is None or task is None:
                return
            if not bar.live.is_started:
                # Started on the first report, which comes after the workers are forked: the
                # bar's drawing thread must not exist when a process forks.
                bar.start()
            # A pulsing bar until the first masks are counted: a large first task can take
            # many seconds, and a bar at 0 looks stuck where a moving one does not.
            bar.update(task, completed=done, total=total if done else None, masks=total)

        try:
            yield update
        finally:
            if bar is not None and bar.live.is_started:
                bar.stop()
            self._scanned = (masks, time.perf_counter() - start)

    def summary(self, doc: dict, *, pos_weight: bool = False) -> None:
        """Print the per-class table of a report document (with its ``pos_weight`` column
        when asked), then the warnings kept so far."""
        classes = doc["classes"]
        shown = (
            classes if len(classes) <= TABLE_ALL_CLASSES else [c for c in classes if c["pixels"]]
        )
        table = Table(
            title=f"{doc['method']} weights, normalize {doc['normalize']}",
            caption=self._caption(doc, len(classes) - len(shown)),
        )
        headers = ["id", "name", "pixels", "share", "share (log)", "images", "weight"]
        if pos_weight:
            headers.append("pos_weight")
        for header in headers:
            left = header in ("name", "share (log)")
            table.add_column(header, justify="left" if left else "right")
        interval = doc.get("interval")  # bootstrap intervals (scan --sample, --bootstrap)
        if interval:
            table.add_column(f"{interval['level']:.0%} interval", justify="right")
        pos = doc["pos_weight"]
        for c in shown:
            row = [
                str(c["id"]),
                escape(c["name"] or ""),
                f"{c['pixels']:,}",
                f"{100 * c['frequency']:.2f}%",
                share_bar(c["frequency"]),
                f"{c['images']:,}",
                f"{c['weight']:.4g}",
            ]
            if pos_weight:
                # One logit for two classes: its pos_weight belongs to class 1.
                at = c["id"] - 1 if len(pos) == 1 else c["id"]
                row.append(f"{pos[at]:.4g}" if 0 <= at < len(pos) else "")
            if interval:
                row.append(f"{interval['low'][c['id']]:.4g} - {interval['high'][c['id']]:.4g}")
            table.add_row(*row, style=None if c["pixels"] else "dim")
        self.console.print(table)
        self.flush()

    @staticmethod
    def _caption(doc: dict, hidden: int) -> str:
        totals = doc["totals"]
        caption = (
            f"{plural(totals['files'], 'mask')}, {plural(totals['pixels'], 'pixel')} counted, "
            f"{totals['ignored']:,} ignored"
        )
        left_out = left_out_parts(doc)
        if left_out:
            caption += "; left out: " + ", ".join(left_out)
        if hidden:
            caption += f"; {plural(hidden, 'class', 'classes')} with no pixels not shown"
        return caption

    def done(self, output: str | None) -> None:
        """Print the warnings left and the closing line: where the document went, and how
        many masks were scanned how fast."""
        self.flush()
        line = f"wrote {output}" if output else "done"
        if self._scanned is not None:
            masks, seconds = self._scanned
            line += f": {plural(masks, 'mask')} in {seconds:.1f} s"
            if seconds > 0 and masks:
                line += f", {masks / seconds:,.0f} masks/s"
        # In a log, one line (for grep), however long the path.
        self.console.print(
            Text(line, style="dim"), highlight=False, soft_wrap=not self.console.is_terminal
        )
