"""What a user watches during `compare`: cells done of total with ETA, the cell running now, and a
live table of the headline numbers of finished cells."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from mambapoc.results import Cell

if TYPE_CHECKING:
    from mambapoc.bench.plan import Plan, Planned


def fmt_bytes(n: float | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def fmt_length(n: int) -> str:
    return f"{n // 1024}k" if n % 1024 == 0 else str(n)


def headline(cell: Cell) -> list[str]:
    """One table row: the numbers a reader looks for first, or the failure."""
    base = [escape(cell.model_name or cell.model), escape(cell.task_key), fmt_length(cell.length_tokens)]
    if not cell.ok:
        return base + [f"[red]{cell.status.upper()}[/red]", "-", "-", "-", escape((cell.error or "")[:60])]
    if cell.accuracy is not None:
        metric = f"acc {cell.accuracy:.2f}"
    elif cell.bits_per_byte is not None:
        metric = f"{cell.bits_per_byte:.3f} bits/B"
    else:
        metric = "-"
    prefill = f"{cell.prefill_s.p50 * 1000:.0f} ms" if cell.prefill_s else "-"
    decode = f"{cell.decode_ms_per_tok:.1f} ms" if cell.decode_ms_per_tok is not None else "-"
    return base + ["ok", prefill, decode, fmt_bytes(cell.peak_mem_bytes), metric]


def cells_table(cells: list[Cell], title: str | None = None) -> Table:
    t = Table(title=title, header_style="bold")
    for col in ("model", "task", "length", "status", "prefill p50", "decode/token", "peak mem", "metric"):
        t.add_column(col, overflow="fold")
    for c in cells:
        t.add_row(*headline(c))
    return t


class LiveDisplay:
    def __init__(self, console: Console | None = None, max_rows: int = 12):
        self.console = console or Console(stderr=True)
        self.max_rows = max_rows
        self.finished: list[dict] = []
        self.progress = Progress(
            TextColumn("[bold]cells"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("ETA"), TimeRemainingColumn(), TextColumn("{task.description}"),
            console=self.console,
        )
        self.task = None
        self.live: Live | None = None

    def start(self, plan: Plan) -> None:
        total = len(plan.cells)
        self.task = self.progress.add_task("", total=total, completed=len(plan.done))
        self.live = Live(self._render(), console=self.console, refresh_per_second=4, transient=False)
        self.live.start()

    def _render(self):
        return Group(self.progress, cells_table(self.finished[-self.max_rows:]))

    def cell_started(self, cell: Planned) -> None:
        self.progress.update(self.task, description=escape(f"now: {cell.model} {cell.task_key} "
                                                           f"at {fmt_length(cell.length_tokens)}"))

    def cell_finished(self, cell: Cell) -> None:
        self.finished.append(cell)
        self.progress.advance(self.task)
        if self.live:
            self.live.update(self._render())

    def stop(self) -> None:
        if self.live:
            self.progress.update(self.task, description="")
            self.live.update(self._render())
            self.live.stop()


class Silent:
    """The display of a comparison run as a library call: nothing is shown."""

    def start(self, plan: Plan) -> None:
        pass

    def cell_started(self, cell: Planned) -> None:
        pass

    def cell_finished(self, cell: Cell) -> None:
        pass

    def stop(self) -> None:
        pass
