"""What people see, all of it on stderr through rich: progress, the summary table, warnings.

stdout is left to the document alone, so ``classweights scan masks/ > weights.json`` and
``| jq .weights`` always get exactly one document.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from .scan import Progress as ProgressCallback

#: Above this many classes the table lists only the classes that occur.
TABLE_ALL_CLASSES = 64


class _RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        return Text(f"{task.speed:,.0f} files/s" if task.speed else "", style="progress.data.speed")


class Display:
    """The stderr side of one command (a ``-q`` run has none: see `cli`)."""

    def __init__(self) -> None:
        self.console = Console(stderr=True)

    def warn(self, message: str) -> None:
        self.console.print(
            f"[yellow]warning:[/] {escape(message)}", highlight=False, soft_wrap=True
        )

    def note(self, message: str) -> None:
        """Say something that is neither a warning nor part of the table."""
        self.console.print(escape(message), highlight=False, soft_wrap=True)

    @contextmanager
    def progress(self) -> Iterator[ProgressCallback | None]:
        """Yield a progress callback that draws a bar, or None when stderr is not a terminal."""
        if not self.console.is_terminal:
            yield None
            return
        # No auto-refresh: no drawing thread runs while the scan forks its workers.
        bar = Progress(
            TextColumn("scanning"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("files"),
            _RateColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
            auto_refresh=False,
        )
        task = bar.add_task("scan", total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total, refresh=True)

        with bar:
            yield update

    def summary(self, doc: dict) -> None:
        """Print the per-class table of a report document."""
        classes = doc["classes"]
        shown = (
            classes if len(classes) <= TABLE_ALL_CLASSES else [c for c in classes if c["pixels"]]
        )
        table = Table(
            title=f"{doc['method']} weights, normalize {doc['normalize']}",
            caption=self._caption(doc, len(classes) - len(shown)),
        )
        for header in ("id", "name", "pixels", "share", "images", "weight"):
            table.add_column(header, justify="left" if header == "name" else "right")
        interval = doc.get("interval")  # bootstrap intervals (scan --sample, --bootstrap)
        if interval:
            table.add_column(f"{interval['level']:.0%} interval", justify="right")
        for c in shown:
            bounds = (
                [f"{interval['low'][c['id']]:.4g} - {interval['high'][c['id']]:.4g}"]
                if interval
                else []
            )
            table.add_row(
                str(c["id"]),
                escape(c["name"] or ""),
                f"{c['pixels']:,}",
                f"{100 * c['frequency']:.2f}%",
                f"{c['images']:,}",
                f"{c['weight']:.4g}",
                *bounds,
                style=None if c["pixels"] else "dim",
            )
        self.console.print(table)

    @staticmethod
    def _caption(doc: dict, hidden: int) -> str:
        totals = doc["totals"]
        caption = (
            f"{totals['files']:,} files, {totals['pixels']:,} pixels counted, "
            f"{totals['ignored']:,} ignored"
        )
        if hidden:
            caption += f"; {hidden} classes with no pixels not shown"
        return caption
