"""The progress display of an ingest: bytes read, MB/s and records/s."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)
from rich.text import Text


class _RecordsPerSecond(ProgressColumn):
    def render(self, task: Task) -> Text:
        elapsed = task.elapsed or 0.0
        records = task.fields.get("records", 0)
        rate = f"{records / elapsed:,.0f} records/s" if elapsed > 0 else ""
        return Text(f"{records:,} records {rate}", style="progress.data.speed")


def ingest_progress(enabled: bool) -> Progress:
    """A progress display on stderr (stdout stays for results); disabled, it draws nothing."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        _RecordsPerSecond(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        disable=not enabled,
    )
