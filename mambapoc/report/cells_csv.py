"""cells.csv: every cell of the run, one row each, flat, for a spreadsheet or a notebook."""

from __future__ import annotations

import csv
import io
import json

from mambapoc.report.load import Run, variant
from mambapoc.results import Cell

COLUMNS = (
    "cell_id", "model", "model_name", "family", "impl", "params", "task", "task_options", "noise_rate",
    "length_tokens", "batch_size", "dtype", "device", "device_name", "status", "error", "prefill_p50_s",
    "prefill_p90_s", "ttft_p50_s", "prefill_tok_s", "decode_ms_per_tok", "decode_tok_s", "new_tokens",
    "peak_mem_bytes", "mem_kind", "peak_mem_reserved_bytes", "peak_rss_bytes", "state_bytes", "accuracy",
    "ci95_lo", "ci95_hi",
    "n", "bits_per_byte", "price_per_hour_usd", "cost_usd_per_1m_input", "cost_usd_per_1m_output",
    "cost_usd_per_request", "prefill_cv", "decode_cv", "timing_attempts", "unstable", "load_avg_1m", "cpu_pressure",
    "cpu_util", "started_at", "finished_at", "wall_s",
)
# A spreadsheet runs a cell that starts with one of these as a formula; error messages and names come from
# outside, so such text is prefixed with an apostrophe to stay text.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def render(run: Run) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for cell in run.all_cells:
        writer.writerow({k: _safe(v) for k, v in _flat(cell).items()})
    return buf.getvalue()


def _flat(cell: Cell) -> dict:
    ci = cell.metrics.get("ci95") or [None, None]
    row = {k: getattr(cell, k, None) for k in COLUMNS}
    row.update(
        task_options=json.dumps(cell.task_options, sort_keys=True, ensure_ascii=False),
        noise_rate=variant(cell).noise_rate,
        prefill_p50_s=cell.prefill_s and cell.prefill_s.p50,
        prefill_p90_s=cell.prefill_s and cell.prefill_s.p90,
        ttft_p50_s=cell.ttft_s and cell.ttft_s.p50,
        prefill_cv=cell.prefill_s and cell.prefill_s.cv,
        decode_cv=cell.decode_s and cell.decode_s.cv,
        accuracy=cell.accuracy,
        ci95_lo=ci[0],
        ci95_hi=ci[1],
        n=cell.metrics.get("n"),
        bits_per_byte=cell.bits_per_byte,
    )
    return row


def _safe(value):
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value
