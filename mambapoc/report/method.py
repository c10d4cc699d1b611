"""What was measured on what (hardware, versions, models, dataset, settings, failed cells), the caveats
and next steps that follow from it, and an appendix with sample records and every cell."""

from __future__ import annotations

from mambapoc import results
from mambapoc.report import fmt
from mambapoc.report.document import Bullets, Cell, Code, Paragraph, Section, Subheading, Table
from mambapoc.report.findings import (
    ACCURACY_MARGIN,
    CALIBRATION_MIN_INSTANCES,
    CALIBRATION_TARGET,
    DAYS_PER_MONTH,
    MEM_KINDS,
    Findings,
    beyond_training,
    has_accuracy,
)
from mambapoc.report.i18n import Text
from mambapoc.report.load import Run, variant
from mambapoc.report.summary import batch_size, device_name, repeats

_SAMPLE_CHARS = 300


def _pairs(rows: list[tuple[str, object]]) -> Table:
    """A two-column what/value table; values are text, so nothing is right-aligned."""
    return Table([], [[Cell(k), Cell(str(v))] for k, v in rows if v not in (None, "")], label_columns=2)


def method(run: Run, f: Findings, t: Text) -> Section:
    blocks = [Subheading(t("hardware_heading"))]
    blocks.append(_environment(run, t))
    blocks.append(Subheading(t("models_heading")))
    blocks.append(_models(run, t))
    blocks.append(Subheading(t("dataset_heading")))
    blocks.extend(_dataset(run, t))
    blocks.append(Subheading(t("settings_heading")))
    blocks.append(_settings(run, t))
    blocks.append(Subheading(t("derived_heading")))
    blocks.append(Bullets([
        t("derived_aggregate"),
        t("derived_accuracy", margin=fmt.plain(ACCURACY_MARGIN * 100)),
        t("derived_cost", days=DAYS_PER_MONTH),
        t("derived_calibration", target=fmt.percent(CALIBRATION_TARGET), minimum=CALIBRATION_MIN_INSTANCES),
    ]))
    blocks.append(Subheading(t("failed_heading")))
    if f.failures:
        rows = [[Cell(run.model_name(c)), Cell(t.variant(variant(c))),
                 Cell(fmt.tokens(c.length_tokens)), Cell(t.status(c.status), failed=True),
                 Cell(c.error or t("no_reason"))] for c in f.failures]
        headers = [t("col_model"), t("col_task"), t("col_length"), t("col_status"), t("col_reason")]
        blocks.append(Table(headers, rows, label_columns=5))
    else:
        blocks.append(Paragraph(t("failed_none", count=len(run.cells))))
    if run.unreadable_lines:
        blocks.append(Paragraph(t("unreadable_lines", count=run.unreadable_lines), tone="warning"))
    return Section("method", t("sec_method"), blocks)


def _devices(run: Run, t: Text) -> str | None:
    """Where the cells ran, when a sweep was spread over several devices (`compare --devices`)."""
    counts: dict[str, int] = {}
    for c in run.all_cells:
        counts[c.device or "?"] = counts.get(c.device or "?", 0) + 1
    if len(counts) < 2:
        return None
    return ", ".join(t("env_devices_item", device=d, cells=n) for d, n in sorted(counts.items()))


def _environment(run: Run, t: Text) -> Table | Paragraph:
    env = run.env
    if not env:
        return Paragraph(t("env_missing"), tone="warning")
    cpu = env.get("cpu_model")
    if cpu:
        cpu = t("env_cpu", model=cpu, cores=env.get("cpu_count", "?"), threads=env.get("torch_threads", "?"))
    versions = ", ".join(f"{name} {env[key]}" for name, key in (
        ("Python", "python"), ("torch", "torch"), ("transformers", "transformers"), ("Triton", "triton"))
        if env.get(key))
    backends = ", ".join(f"{where}: {env[key]}" for where, key in (
        ("CPU", "scan_backend_cpu"), ("GPU", "scan_backend_cuda")) if env.get(key))
    return _pairs([
        (t("env_device"), device_name(run)),
        (t("env_devices"), _devices(run, t)),
        (t("env_gpus"), ", ".join(env.get("gpus") or []) or t("none")),
        (t("env_cpu_label"), cpu),
        (t("env_platform"), env.get("platform")),
        ("mambapoc", f"{env.get('mambapoc', '?')} ({env.get('git_rev') or '?'})"),
        (t("env_versions"), versions),
        (t("env_scan_backend"), backends),
    ])


def _models(run: Run, t: Text) -> Table:
    headers = [t("col_model"), t("col_family"), t("col_impl"), t("col_description"), t("col_params"),
               t("col_trained_length")]
    rows = [[Cell(m.name if m.name == m.spec else f"{m.name} ({m.spec})"), Cell(t.family(m.family, m.footprint)),
             Cell(t.impl(m.impl)), Cell(m.description or t("not_recorded")),
             Cell(fmt.count(m.params) if m.params else t("not_recorded")),
             Cell(fmt.count(m.trained_length) if m.trained_length else t("not_recorded"))]
            for m in run.models]
    return Table(headers, rows, label_columns=4)


def _dataset(run: Run, t: Text) -> list:
    ds = run.dataset
    if ds is None:
        return [Paragraph(t("dataset_missing"), tone="warning")]
    counts = ds.get("counts") or {}
    records = counts.get("records")
    templates = (ds.get("templates") or {}).get("count")
    named = ds.get("name") or (run.config.get("dataset") or {}).get("name") or "?"
    blocks = [Paragraph(t("dataset_summary", name=named,
                          records=fmt.count(records) if records is not None else t("not_recorded"),
                          templates=fmt.count(templates) if templates is not None else t("not_recorded")))]
    sources = [s for s in ds.get("sources") or [] if isinstance(s, dict)]
    if sources:
        headers = [t("col_source"), t("col_format"), t("col_confidence"), t("col_size")]
        rows = [[Cell(str(s.get("path", "?"))), Cell(str(s.get("format", "?"))),
                 Cell(f"{float(s['confidence']):.2f}" if s.get("confidence") is not None else "–"),
                 Cell(fmt.size(float(s["bytes"])) if s.get("bytes") is not None else "–")] for s in sources]
        blocks.append(Table(headers, rows, label_columns=2))
    other = {k: v for k, v in counts.items() if k != "records"}
    if other:
        blocks.append(Table([t("col_ingest_count"), t("col_count")],
                            [[Cell(t.count_name(k)), Cell(fmt.count(v))] for k, v in other.items()]))
    masking = ds.get("masking") or {}
    if not masking.get("enabled"):
        blocks.append(Paragraph(t("masking_off"), tone="warning"))
    elif masking.get("counts") or masking.get("rules"):
        counts = masking.get("counts") or {}
        # Every rule that ran is listed, with 0 where it found nothing: a reader sees what was looked for.
        kinds = masking.get("rules") or list(counts)
        blocks.append(Table([t("col_masked_kind"), t("col_count")],
                            [[Cell(str(k)), Cell(fmt.count(counts.get(k, 0)))] for k in kinds],
                            caption=t("masking_caption")))
    else:
        blocks.append(Paragraph(t("masking_nothing_found")))
    return blocks


def _settings(run: Run, t: Text) -> Table:
    cfg = run.config
    lengths = ", ".join(fmt.tokens(n) for n in sorted({c.length_tokens for c in run.cells}))
    tasks = ", ".join(t.variant(v) for v in sorted({variant(c) for c in run.cells}))
    mem_kinds = sorted({c.mem_kind for c in run.cells if c.mem_kind})
    return _pairs([
        (t("set_lengths"), lengths),
        (t("set_tasks"), tasks),
        (t("set_dtype"), cfg.get("dtype")),
        (t("set_batch"), batch_size(run)),
        (t("set_repeats"), t("set_repeats_value", repeats=repeats(run), warmup=cfg.get("warmup", "?"),
                             min_time=cfg.get("min_time_s", "?"))),
        (t("set_new_tokens"), cfg.get("new_tokens")),
        (t("set_seed"), cfg.get("seed")),
        (t("set_memory"), ", ".join(t(f"mem_kind_{k}") if k in MEM_KINDS else k
                                    for k in mem_kinds)),
        (t("set_prefill"), _prefill_chunks(run, t)),
        (t("set_decode"), "; ".join(f"{m.name}: {path}" for m in run.models
                                    for path in sorted({c.decode_path for c in run.cells
                                                        if c.key == m.key and c.decode_path}))
         or t("not_recorded")),
    ])


def _prefill_chunks(run: Run, t: Text) -> str:
    chunks = sorted({c.prefill_chunk for c in run.cells if c.prefill_chunk is not None})
    if not chunks:
        return t("not_recorded")
    return ", ".join(t("set_prefill_whole") if n == 0 else t("set_prefill_chunk", tokens=fmt.tokens(n))
                     for n in chunks)


def caveats(run: Run, f: Findings, t: Text) -> Section:
    items = [t("caveat_scope", models=", ".join(m.name for m in run.models), device=device_name(run)),
             t("caveat_tasks")]
    if f.accuracy is not None:
        lo, hi = f.accuracy.difference.interval
        items.append(t("caveat_accuracy_n", n=fmt.count(f.accuracy.difference.mamba.n),
                       half=f"{(hi - lo) * 50:.1f}"))
    beyond = sorted(beyond_training(run, *run.models))
    if beyond:
        items.append(t("caveat_beyond_trained", models=", ".join(beyond)))
    if any(c.mem_kind == "rss_delta" for c in run.cells):
        items.append(t("caveat_rss"))
    if f.cost is not None and f.cost.mamba.basis != "measured":
        items.append(t("caveat_workload", length=fmt.tokens(f.cost.length), basis=t(f"basis_word_{f.cost.mamba.basis}")))
    if f.failures:
        items.append(t("caveat_failed", count=len(f.failures)))
    if run.dataset is None:
        items.append(t("caveat_no_dataset"))
    threshold = f.calibration[f.mamba.key].threshold if f.mamba else None
    steps = [t("next_pilot", threshold=fmt.plain(threshold)) if threshold is not None else t("next_pilot_review_all")]
    if f.accuracy is None or f.accuracy.verdict == "unclear":
        steps.append(t("next_more_instances"))
    if f.cost is not None and f.cost.mamba.basis != "measured":
        steps.append(t("next_workload_length", length=fmt.tokens(f.cost.length)))
    if f.failures:
        steps.append(t("next_rerun_failed", path=run.path))
    steps.append(t("next_hardware"))
    return Section("next", t("sec_next"), [Bullets(items), Subheading(t("next_heading")), Bullets(steps)])


def appendix(run: Run, t: Text, samples_note: str | None = None) -> Section:
    """Masked records cut short (none when `samples_note` says why), then every cell."""
    blocks = [Subheading(t("samples_heading"))]
    if samples_note:
        blocks.append(Paragraph(t(samples_note), tone="muted"))
    elif run.samples:
        blocks.append(Paragraph(t("samples_intro")))
        lines = []
        for s in run.samples:
            where = f"{s['source']}:{s['line']}  " if s.get("source") and s.get("line") else ""
            text = str(s.get("text") or s.get("message") or "")
            lines.append(where + (text if len(text) <= _SAMPLE_CHARS else text[:_SAMPLE_CHARS] + "…"))
        blocks.append(Code(lines))
    else:
        blocks.append(Paragraph(t("samples_none"), tone="muted"))
    blocks.append(Subheading(t("cells_heading")))
    blocks.append(Paragraph(t("cells_intro")))
    headers = [t("col_model"), t("col_task"), t("col_length"), t("col_status"), t("col_prefill"), t("col_decode"),
               t("col_peak_memory"), t("col_result"), t("col_wall")]
    rows = []
    for c in run.all_cells:
        ok = c.ok
        rows.append([
            Cell(run.model_name(c)),
            Cell(t.variant(variant(c))),
            Cell(fmt.tokens(c.length_tokens)),
            Cell(t.status(c.status) if not ok else "ok", failed=not ok),
            Cell(fmt.seconds(c.prefill_s.p50) if ok and c.prefill_s else "–"),
            Cell(fmt.ms(c.decode_ms_per_tok) if ok and c.decode_ms_per_tok else "–"),
            Cell(fmt.size(c.peak_mem_bytes) if ok and c.peak_mem_bytes else "–"),
            Cell(_result(c)),
            Cell(f"{c.wall_s:.0f} s" if c.wall_s is not None else "–"),
        ])
    blocks.append(Table(headers, rows, label_columns=4))
    return Section("appendix", t("sec_appendix"), blocks)


def _result(cell: results.Cell) -> str:
    metrics = cell.metrics
    if has_accuracy(cell):
        return fmt.percent(metrics["accuracy"])
    if cell.ok and metrics.get("bits_per_byte") is not None:
        return f"{metrics['bits_per_byte']:.3f} bpb"
    return "–"
