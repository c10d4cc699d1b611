"""The evidence sections: speed, memory, accuracy, robustness and cost, each a chart with the table of the
numbers it plots. A cell that did not finish shows its status in the table, never a blank or a zero."""

from __future__ import annotations

from collections.abc import Callable

from mambapoc import results
from mambapoc.report import charts, fmt, serving
from mambapoc.report.document import Bullets, Cell, Figure, Paragraph, Section, Subheading, Table
from mambapoc.report.findings import (
    ACCURACY_MARGIN,
    CALIBRATION_MIN_INSTANCES,
    CALIBRATION_TARGET,
    DAYS_PER_MONTH,
    MEM_KINDS,
    Difference,
    Findings,
    Point,
    break_even_of,
    calibration_pairs,
    has_accuracy,
    proportion,
    request_cost,
)
from mambapoc.report.i18n import Text
from mambapoc.report.load import Run, Variant, variant
from mambapoc.report.summary import (
    break_even_text,
    cost_basis,
    faster,
    less_memory,
    repeats,
)


def sections(run: Run, f: Findings, t: Text) -> list[Section]:
    found = [speed(run, f, t), memory(run, f, t), accuracy(run, f, t), robustness(run, f, t), cost(run, f, t)]
    return found + [s for s in (serving.section(run, f, t),) if s is not None]


def _failed(status: str, t: Text, columns: int) -> list[Cell]:
    """A failed point's row tail: the status in the first number column, the rest left empty."""
    return [Cell(t.status(status), failed=True)] + [Cell("")] * (columns - 1)


UNSTABLE = "~"


def _point_rows(run: Run, f: Findings, t: Text, columns: list[Callable[[Point], str]],
                timed: bool = False) -> list[list[Cell]]:
    """One row per model and length. With `timed`, figures resting on unstable timings carry the mark."""
    rows = []
    for m in run.models:
        for n, p in f.profiles[m.key].items():
            head = [Cell(m.name), Cell(fmt.tokens(n))]
            if p.status != "ok":
                rows.append(head + _failed(p.status, t, len(columns)))
            else:
                mark = f" {UNSTABLE}" if timed and p.unstable else ""
                rows.append(head + [Cell(col(p) + (mark if col(p) != "–" else "")) for col in columns])
    return rows


def unstable_note(run: Run, f: Findings, t: Text) -> list[Paragraph]:
    """The note that explains the mark, where any figure carries it."""
    count = sum(len(p.unstable) for pts in f.profiles.values() for p in pts.values())
    if not count:
        return []
    spread = (run.config.get("compare") or {}).get("max_spread", 0.1)
    return [Paragraph(t("unstable_note", mark=UNSTABLE, count=count, spread=fmt.percent(spread)), tone="warning")]


def _or_dash(value: float | None, show: Callable[[float], str]) -> str:
    return show(value) if value is not None else "–"


def speed(run: Run, f: Findings, t: Text) -> Section:
    blocks = [
        Paragraph(t("speed_intro", repeats=repeats(run))),
        Figure(charts.speed(run, f, t), t("speed_caption")),
    ]
    if f.speed is not None:
        pm, pt = f.profiles[f.mamba.key], f.profiles[f.transformer.key]
        by_length = [
            f"{fmt.tokens(n)}: {faster(pt[n].prefill_s / pm[n].prefill_s, t)}"
            for n in pm
            if n in pt and pm[n].prefill_s and pt[n].prefill_s
        ]
        blocks.append(Paragraph(t("speed_by_length", mamba=f.mamba.name, items="; ".join(by_length))))
    headers = [t("col_model"), t("col_length"), t("col_prefill"), t("col_ttft"), t("col_decode"),
               t("col_prefill_rate"), t("col_decode_rate")]
    rows = _point_rows(run, f, t, [
        lambda p: _or_dash(p.prefill_s, fmt.seconds),
        lambda p: _or_dash(p.ttft_s, fmt.seconds),
        lambda p: _or_dash(p.decode_ms, fmt.ms),
        lambda p: _or_dash(p.prefill_tok_s, fmt.rate),
        lambda p: _or_dash(p.decode_tok_s, fmt.rate),
    ], timed=True)
    blocks.append(Table(headers, rows, label_columns=2))
    blocks += unstable_note(run, f, t)
    return Section("speed", t("sec_speed"), blocks)


def memory(run: Run, f: Findings, t: Text) -> Section:
    kinds = sorted({p.mem_kind for pts in f.profiles.values() for p in pts.values() if p.mem_kind})
    blocks = [Paragraph(t(f"memory_kind_{k}")) for k in kinds if k in MEM_KINDS]
    blocks.append(Paragraph(t("memory_state")))
    blocks.append(Figure(charts.memory(run, f, t), t("memory_caption")))
    s = f.speed
    if s is not None and s.memory_ratio is not None:
        blocks.append(Paragraph(t("memory_at", length=fmt.tokens(s.length), mamba=f.mamba.name,
                                  m=fmt.size(s.mamba.peak_mem), transformer=f.transformer.name,
                                  t=fmt.size(s.transformer.peak_mem), ratio=less_memory(s.memory_ratio, t))))
    headers = [t("col_model"), t("col_length"), t("col_peak_memory"), t("col_state")]
    rows = _point_rows(run, f, t, [lambda p: _or_dash(p.peak_mem, fmt.size), lambda p: _or_dash(p.state_bytes, fmt.size)])
    blocks.append(Table(headers, rows, label_columns=2))
    return Section("memory", t("sec_memory"), blocks)


def _clean_variants(run: Run) -> list[Variant]:
    return sorted({variant(c) for c in run.cells if variant(c).noise_rate == 0})


def _is_accuracy_task(run: Run, v: Variant) -> bool:
    return any(has_accuracy(c) for c in run.cells if variant(c) == v)


def _cells(run: Run, v: Variant) -> dict[tuple[str, int], results.Cell]:
    return {(c.key, c.length_tokens): c for c in run.cells if variant(c) == v}


def _accuracy_text(cell: dict | None, t: Text) -> Cell:
    if cell is None:
        return Cell(t("not_run"))
    if not cell.ok:
        return Cell(t.status(cell.status), failed=True)
    if not has_accuracy(cell):
        return Cell("–")
    p = proportion([cell])
    lo, hi = p.interval
    return Cell(f"{fmt.percent(p.value)} ({lo * 100:.0f}–{hi * 100:.0f})")


def accuracy(run: Run, f: Findings, t: Text) -> Section:
    variants = [v for v in _clean_variants(run) if _is_accuracy_task(run, v) or v.task == "continuation"]
    blocks = [Paragraph(t("accuracy_intro", margin=fmt.plain(ACCURACY_MARGIN * 100)))]
    if not variants:
        blocks.append(Paragraph(t("accuracy_none"), tone="warning"))
        return Section("accuracy", t("sec_accuracy"), blocks)
    blocks.append(Figure(charts.accuracy(run, variants, t), t("accuracy_caption")))
    blocks.extend(_accuracy_table(run, f, t, [v for v in variants if _is_accuracy_task(run, v)]))
    blocks.extend(_continuation_table(run, t, [v for v in variants if v.task == "continuation"]))
    needles = [v for v in variants if (v.task == "needle") and _has_by_depth(run, v)]
    if needles:
        blocks.append(Subheading(t("needle_heading")))
        blocks.append(Paragraph(t("needle_intro")))
        for v in needles:
            blocks.append(Figure(charts.needle_heatmap(run, v, t), t("needle_caption", task=t.variant(v))))
    blocks.extend(_calibration_blocks(run, f, t))
    return Section("accuracy", t("sec_accuracy"), blocks)


def _has_by_depth(run: Run, v: Variant) -> bool:
    return any(c.metrics.get("by_depth") for c in run.cells if variant(c) == v)


def _accuracy_table(run: Run, f: Findings, t: Text, variants: list[Variant]) -> list:
    if not variants:
        return []
    pair = f.mamba is not None and f.transformer is not None
    headers = [t("col_task"), t("col_length")] + [m.name for m in run.models]
    if pair:
        headers.append(t("col_difference"))
    rows = []
    for v in variants:
        cells = _cells(run, v)
        for n in sorted({length for _, length in cells}):
            row = [Cell(t.variant(v)), Cell(fmt.tokens(n))]
            row += [_accuracy_text(cells.get((m.key, n)), t) for m in run.models]
            if pair:
                row.append(_difference_text(cells.get((f.mamba.key, n)), cells.get((f.transformer.key, n))))
            rows.append(row)
    return [Table(headers, rows, label_columns=2, caption=t("accuracy_table_caption"))]


def _difference_text(mamba: dict | None, transformer: dict | None) -> Cell:
    if mamba is None or transformer is None or not has_accuracy(mamba) or not has_accuracy(transformer):
        return Cell("–")
    d = Difference(proportion([mamba]), proportion([transformer]))
    lo, hi = d.interval
    return Cell(f"{fmt.signed(d.value * 100)} ({fmt.signed(lo * 100)}…{fmt.signed(hi * 100)})")


def _continuation_table(run: Run, t: Text, variants: list[Variant]) -> list:
    blocks = []
    for v in variants:
        cells = _cells(run, v)
        rows = []
        for n in sorted({length for _, length in cells}):
            row = [Cell(fmt.tokens(n))]
            for m in run.models:
                c = cells.get((m.key, n))
                if c is None:
                    row.append(Cell(t("not_run")))
                elif not c.ok:
                    row.append(Cell(t.status(c.status), failed=True))
                else:
                    row.append(Cell(_or_dash(c.metrics.get("bits_per_byte"), lambda x: f"{x:.3f}")))
            rows.append(row)
        headers = [t("col_length")] + [m.name for m in run.models]
        blocks.append(Table(headers, rows, caption=t("continuation_caption", task=t.variant(v))))
    return blocks


def _calibration_blocks(run: Run, f: Findings, t: Text) -> list:
    pairs = {m.key: calibration_pairs(run, m) for m in run.models}
    blocks = [
        Subheading(t("calibration_heading")),
        Paragraph(t("calibration_intro", target=fmt.percent(CALIBRATION_TARGET), minimum=CALIBRATION_MIN_INSTANCES)),
    ]
    if not any(pairs.values()):
        blocks.append(Paragraph(t("calibration_none"), tone="warning"))
        return blocks
    blocks.append(Figure(charts.calibration(run, f, pairs, t), t("calibration_caption")))
    items = []
    for m in run.models:
        c = f.calibration[m.key]
        if c.threshold is not None:
            items.append(t("calibration_threshold", model=m.name, threshold=fmt.plain(c.threshold),
                           accuracy=fmt.percent(c.accuracy_above), covered=fmt.count(c.covered),
                           total=fmt.count(c.total), share=fmt.percent(c.covered / c.total),
                           review=fmt.percent(1 - c.covered / c.total)))
        elif c.reason == "too_few":
            items.append(t("calibration_too_few", model=m.name, total=fmt.count(c.total),
                           minimum=CALIBRATION_MIN_INSTANCES))
        else:
            items.append(t("calibration_not_reached", model=m.name, total=fmt.count(c.total),
                           target=fmt.percent(CALIBRATION_TARGET)))
    blocks.append(Bullets(items))
    return blocks


def robustness(run: Run, f: Findings, t: Text) -> Section:
    blocks = [Subheading(t("noise_heading"))]
    noisy = [v for v in sorted({variant(c) for c in run.cells if variant(c).noise_rate > 0})
             if _is_accuracy_task(run, v) or _is_accuracy_task(run, v.clean)]
    if noisy:
        blocks.append(Paragraph(t("noise_intro")))
        blocks.append(Figure(charts.noise(run, noisy, t), t("noise_caption")))
        blocks.append(_noise_table(run, t, noisy))
    else:
        blocks.append(Paragraph(t("noise_none"), tone="muted"))
    blocks.append(Subheading(t("trained_heading")))
    blocks.extend(_beyond_trained(run, t))
    return Section("robustness", t("sec_robustness"), blocks)


def _noise_table(run: Run, t: Text, noisy: list[Variant]) -> Table:
    headers = [t("col_task"), t("col_model"), t("col_length"), t("col_clean"), t("col_noisy"), t("col_change")]
    rows = []
    for v in noisy:
        clean, dirty = _cells(run, v.clean), _cells(run, v)
        for m in run.models:
            for n in sorted({length for key, length in dirty if key == m.key}):
                a, b = clean.get((m.key, n)), dirty.get((m.key, n))
                change = "–"
                if a is not None and b is not None and has_accuracy(a) and has_accuracy(b):
                    change = fmt.signed((proportion([b]).value - proportion([a]).value) * 100)
                rows.append([Cell(t.variant(v)), Cell(m.name), Cell(fmt.tokens(n)), _accuracy_text(a, t),
                             _accuracy_text(b, t), Cell(change)])
    return Table(headers, rows, label_columns=3, caption=t("noise_table_caption"))


def _beyond_trained(run: Run, t: Text) -> list:
    known = [m for m in run.models if m.trained_length]
    unknown = [m.name for m in run.models if not m.trained_length]
    blocks = []
    if known:
        listed = ", ".join(f"{m.name}: {fmt.tokens(m.trained_length)}" for m in known)
        blocks.append(Paragraph(t("trained_intro", models=listed)))
    if unknown:
        blocks.append(Paragraph(t("trained_unknown", models=", ".join(unknown)), tone="muted"))
    if not known:
        return blocks
    headers = [t("col_model"), t("col_length"), t("col_beyond"), t("col_accuracy_pooled"), t("col_bits_per_byte")]
    rows = []
    for m in known:
        lengths = sorted({c.length_tokens for c in run.cells if c.key == m.key})
        for n in lengths:
            at = [c for c in run.cells if c.key == m.key and c.length_tokens == n
                  and variant(c).noise_rate == 0]
            scored = [c for c in at if has_accuracy(c)]
            pooled = fmt.percent(proportion(scored).value) if scored else "–"
            bpb = [c.metrics["bits_per_byte"] for c in at
                   if c.ok and c.metrics.get("bits_per_byte") is not None]
            failed = [c for c in at if not c.ok]
            if failed and not scored:
                pooled_cell = Cell(", ".join(sorted({t.status(c.status) for c in failed})), failed=True)
            else:
                pooled_cell = Cell(pooled)
            rows.append([Cell(m.name), Cell(fmt.tokens(n)), Cell(t("yes") if n > m.trained_length else t("no")),
                         pooled_cell, Cell(f"{bpb[0]:.3f}" if bpb else "–")])
    blocks.append(Table(headers, rows, label_columns=3, caption=t("trained_table_caption")))
    curves = {}
    for m in run.models:
        ok = [c for c in run.cells if c.key == m.key and c.ok
              and c.metrics.get("loss_by_position")]
        if ok:
            longest = max(ok, key=lambda c: c.length_tokens)
            curves[m.key] = [(float(p), float(loss)) for p, loss in longest.metrics["loss_by_position"]]
    if curves:
        blocks.append(Figure(charts.loss_by_position(run, curves, t), t("loss_caption")))
    return blocks


def cost(run: Run, f: Findings, t: Text) -> Section:
    pricing = run.config.get("pricing") or {}
    blocks = []
    if pricing.get("price_per_hour_usd") is not None:
        blocks.append(Paragraph(t("cost_intro", price=fmt.usd(float(pricing["price_per_hour_usd"])),
                                  device=pricing.get("device_name") or "?", source=pricing.get("source") or "?")))
    else:
        blocks.append(Paragraph(t("cost_unpriced"), tone="warning"))
    blocks.append(Paragraph(t("cost_formula")))
    if f.cost is None:
        blocks.append(Paragraph(t("cost_not_compared"), tone="warning"))
        return Section("cost", t("sec_cost"), blocks)
    c = f.cost
    blocks.append(Figure(charts.cost(run, f, t), t("cost_caption", new_tokens=c.new_tokens)))
    headers = [t("col_model"), t("col_length"), t("col_in_1m"), t("col_out_1m"),
               t("col_per_request", new_tokens=c.new_tokens)]
    rows = _point_rows(run, f, t, [
        lambda p: _or_dash(p.cost_in_1m, fmt.usd),
        lambda p: _or_dash(p.cost_out_1m, fmt.usd),
        lambda p: _or_dash(request_cost(p, p.length, c.new_tokens), fmt.usd),
    ], timed=True)
    for m, at in ((f.mamba, c.mamba), (f.transformer, c.transformer)):
        rows.append([Cell(m.name), Cell(t("workload_row", length=fmt.tokens(c.length))),
                     Cell(fmt.usd(at.in_1m)), Cell(fmt.usd(at.out_1m)), Cell(fmt.usd(at.per_request))])
    caption = t("workload_rows_caption", length=fmt.tokens(c.length), basis=cost_basis(c.mamba, t))
    blocks.append(Table(headers, rows, label_columns=2, caption=caption))
    blocks += unstable_note(run, f, t)
    items = []
    if c.from_workload and c.requests_per_day:
        items.append(t("cost_month", requests=fmt.count(c.requests_per_day), length=fmt.tokens(c.length),
                       new_tokens=c.new_tokens, mamba=f.mamba.name, m=fmt.usd(c.mamba.per_month),
                       transformer=f.transformer.name, t=fmt.usd(c.transformer.per_month),
                       basis=cost_basis(c.mamba, t)))
    else:
        items.append(t("cost_no_workload"))
    items.append(break_even_text(f, t))
    blocks.append(Bullets(items))
    blocks += sensitivity(f, t)
    return Section("cost", t("sec_cost"), blocks)


def _cheaper_from(be, t: Text) -> str:
    if be is None or be.kind == "one_length":
        return "–"
    if be.kind == "at":
        return t("cheaper_from", length=fmt.tokens(be.length))
    return t(f"cheaper_{be.kind}", length=fmt.tokens(be.lengths[-1]))


SENSITIVITY_TOKENS = (16, 256, 1024)  # generated tokens per request: short answers to long reports


def sensitivity(f: Findings, t: Text) -> list:
    """Cost by prompt length and generated tokens, at the stated requests a day, and from which length
    Mamba is the cheaper one for each number of generated tokens: the two things that move the answer.
    (Requests a day and the price scale both models' cost alike, so they never change which is cheaper.)"""
    c = f.cost
    pm, pt = f.profiles[f.mamba.key], f.profiles[f.transformer.key]
    lengths = [n for n in pm if n in pt and pm[n].status == "ok" and pt[n].status == "ok"]
    if c is None or not lengths:
        return []
    tokens = sorted({c.new_tokens, *SENSITIVITY_TOKENS})
    scale = c.requests_per_day * DAYS_PER_MONTH if c.requests_per_day else 1

    def pair(n: int, new: int) -> str:
        m, tr = request_cost(pm[n], n, new), request_cost(pt[n], n, new)
        if m is None or tr is None:
            return "–"
        return f"{fmt.usd(m * scale)} / {fmt.usd(tr * scale)}"

    rows = [[Cell(fmt.tokens(n)), *(Cell(pair(n, new)) for new in tokens)] for n in lengths]
    flips = [_cheaper_from(break_even_of(pm, pt, lengths, new), t) for new in tokens]
    rows.append([Cell(t("sensitivity_cheaper_from")), *(Cell(x) for x in flips)])
    unit = (t("sensitivity_unit_month", requests=fmt.count(c.requests_per_day)) if c.requests_per_day
            else t("sensitivity_unit_request"))
    headers = [t("col_length"), *(t("sensitivity_col_tokens", tokens=fmt.count(new)) for new in tokens)]
    return [Subheading(t("sensitivity_heading")),
            Table(headers, rows, label_columns=1, caption=t("sensitivity_caption", unit=unit)),
            Paragraph(t("sensitivity_scaling"))]
