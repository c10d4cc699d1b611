"""The "Serving capacity" section: how many requests one device serves at once at each length, the
throughput that gives, the devices the workload needs, and the cost at capacity beside the cost of one
request at a time; then, computed from the models' configurations, how many fit on deployment cards."""

from __future__ import annotations

from mambapoc.models.footprint import CARDS, Footprint
from mambapoc.report import charts, fmt
from mambapoc.report.document import Cell, Figure, Paragraph, Section, Subheading, Table
from mambapoc.report.findings import (
    DAYS_PER_MONTH,
    Findings,
    devices_needed,
    request_cost,
    serving_cells,
    serving_points,
)
from mambapoc.report.i18n import Text
from mambapoc.report.load import Run

PROJECTED_LENGTHS = (65536,)  # the headline length of a long-context deployment, measured or not


def section(run: Run, f: Findings, t: Text) -> Section | None:
    """Measured capacity where serving cells ran, then the computed projection where footprints exist."""
    blocks = (measured(run, f, t) if f.serving else []) + projection(run, t)
    return Section("serving", t("sec_serving"), blocks) if blocks else None


def measured(run: Run, f: Findings, t: Text) -> list:
    workload = run.config.get("workload") or {}
    per_day = workload.get("requests_per_day")
    new_tokens = f.cost.new_tokens if f.cost else 16
    blocks = [Paragraph(t("serving_intro"))]
    if any(c.capacity_limit for cells in f.serving.values() for c in cells.values()):
        bounds = (run.config.get("compare") or {})
        blocks.append(Paragraph(t("serving_search", budget=_budget(f), latency=_bound(bounds, t))))
    blocks.append(Figure(charts.capacity(run, f, t), t("serving_caption")))
    headers = [t("col_model"), t("col_length"), t("col_batch"), t("col_limit"), t("col_prefill_rate"),
               t("col_decode_rate"), t("col_ttft"), t("col_decode"), t("col_peak_memory"),
               t("col_cost_capacity"), t("col_cost_one"), t("col_devices", requests=fmt.count(per_day or 0))]
    rows = []
    batch_one = serving_cells(run, batch=1)
    for m in run.models:
        # One request at a time: the serving sweep's batch-1 cell (same prompts, same moment), else the profile.
        one = {**f.profiles.get(m.key, {}), **serving_points(batch_one.get(m.key, {}))}
        for n, c in sorted(f.serving.get(m.key, {}).items()):
            at = request_cost(serving_points({n: c})[n], n, new_tokens)
            single = request_cost(one[n], n, new_tokens) if n in one and one[n].status == "ok" else None
            scale = per_day * DAYS_PER_MONTH if per_day else 1
            rows.append([Cell(m.name), Cell(fmt.tokens(n)), Cell(fmt.count(c.batch_size)),
                         Cell(t(f"limit_{c.capacity_limit}") if c.capacity_limit else t("limit_fixed")),
                         Cell(fmt.rate(c.prefill_tok_s)), Cell(fmt.rate(c.decode_tok_s)),
                         Cell(fmt.seconds(c.ttft_s.p50) if c.ttft_s else "–"), Cell(fmt.ms(c.decode_ms_per_tok)),
                         Cell(fmt.size(c.peak_mem_bytes) if c.peak_mem_bytes else "–"),
                         Cell(fmt.usd(at * scale) if at is not None else "–"),
                         Cell(fmt.usd(single * scale) if single is not None else "–"),
                         Cell(fmt.count(devices_needed(c, per_day)) if per_day else "–")])
    unit = t("sensitivity_unit_month", requests=fmt.count(per_day)) if per_day else t("sensitivity_unit_request")
    blocks.append(Table(headers, rows, label_columns=2, caption=t("serving_table_caption", unit=unit,
                                                                    new_tokens=new_tokens)))
    if f.cost is not None and f.cost.at_capacity:
        blocks.append(Paragraph(t("serving_summary_uses")))
    return blocks


def projection(run: Run, t: Text) -> list:
    """How many requests fit on deployment cards, computed from each model's config.json (bfloat16)."""
    models = [m for m in run.models if m.footprint]
    if not models:
        return []
    lengths = sorted({c.length_tokens for c in run.cells} | set(PROJECTED_LENGTHS))
    rows = []
    for m in models:
        fp = Footprint(**m.footprint)
        rows.append([Cell(m.name), Cell(t("per_request_memory")),
                     *(Cell(fmt.size(fp.per_request(n))) for n in lengths)])
        for card, size in CARDS.items():
            rows.append([Cell(""), Cell(t("fits_on", card=card)), *(Cell(fmt.count(fp.fits(size, n))) for n in lengths)])
    headers = [t("col_model"), "", *(fmt.tokens(n) for n in lengths)]
    return [Subheading(t("projection_heading")), Paragraph(t("projection_intro"), tone="warning"),
            Figure(charts.projection(models, t), t("projection_caption")),
            Table(headers, rows, label_columns=2, caption=t("projection_caption_table"))]


def _budget(f: Findings) -> str:
    budgets = sorted({c.memory_budget_bytes for cells in f.serving.values() for c in cells.values()
                      if c.memory_budget_bytes})
    return ", ".join(fmt.size(b) for b in budgets) or "?"


def _bound(compare: dict, t: Text) -> str:
    parts = []
    if compare.get("max_token_latency_s"):
        parts.append(t("bound_token", ms=fmt.plain(compare["max_token_latency_s"] * 1000)))
    if compare.get("max_ttft_s"):
        parts.append(t("bound_ttft", s=fmt.plain(compare["max_ttft_s"])))
    return t("bound_join").join(parts) if parts else t("bound_none")
