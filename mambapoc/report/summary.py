"""The executive summary: the recommendation with its conditions, three findings with their numbers, and
what was measured on what. Also the one-line headline the command line prints."""

from __future__ import annotations

from mambapoc.report import fmt
from mambapoc.report.decision import RUNS
from mambapoc.report.document import Callout, Card, Cards, Paragraph, Section
from mambapoc.report.findings import (
    ACCURACY_MARGIN,
    CALIBRATION_TARGET,
    Cost,
    CostAt,
    Findings,
    beyond_training,
)
from mambapoc.report.i18n import Text
from mambapoc.report.load import Model, Run, variant
from mambapoc.results import Cell

_TONES = {"switch": "positive", "only_mamba": "positive", "keep": "negative", "only_transformer": "negative"}


def section(run: Run, f: Findings, t: Text) -> Section:
    cards = [_speed_card(f, t), _accuracy_card(f, t), _cost_card(f, t)]
    blocks = [_recommendation(run, f, t), Cards(cards), Paragraph(_context(run, f, t), tone="muted")]
    return Section("summary", t("sec_summary"), blocks)


def headline(run: Run, f: Findings, t: Text) -> str:
    """One line: the verdict and the numbers it rests on."""
    short = t(f"headline_{f.recommendation.verdict}")
    parts = []
    if f.speed is not None:
        parts.append(t("headline_speed", ratio=faster(f.speed.prefill_ratio, t), length=fmt.tokens(f.speed.length)))
    if f.accuracy is not None:
        lo, hi = f.accuracy.difference.interval
        parts.append(t("headline_accuracy", diff=points(f.accuracy.difference.value, t), lo=fmt.signed(lo * 100),
                       hi=fmt.signed(hi * 100)))
    if f.cost is not None:
        parts.append(_cost_value(f.cost, t))
    return t("headline", verdict=short, evidence=t("headline_join").join(parts)) if parts else short


def faster(ratio: float, t: Text) -> str:
    return t("faster", ratio=fmt.ratio(ratio)) if ratio >= 1 else t("slower", ratio=fmt.ratio(1 / ratio))


def less_memory(ratio: float, t: Text) -> str:
    return t("less_memory", ratio=fmt.ratio(ratio)) if ratio >= 1 else t("more_memory", ratio=fmt.ratio(1 / ratio))


def points(diff: float, t: Text) -> str:
    return t("points", value=fmt.signed(diff * 100))


def cost_basis(at: CostAt, t: Text) -> str:
    if at.basis == "measured":
        return t("basis_measured")
    if at.basis == "interpolated":
        lo, hi = at.from_lengths
        return t("basis_interpolated", lo=fmt.tokens(lo), hi=fmt.tokens(hi))
    return t("basis_nearest", length=fmt.tokens(at.from_lengths[0]))


def break_even_text(f: Findings, t: Text) -> str:
    be = f.break_even
    if be is None:
        return t("break_even_unknown")
    if be.kind == "at":
        short, exact = fmt.tokens(be.length), fmt.count(be.length)
        return t("break_even_at", length=short if short == exact else f"{short} ({exact})")
    lengths = ", ".join(fmt.tokens(n) for n in be.lengths)
    if be.kind == "always":
        return t("break_even_always", lengths=lengths)
    if be.kind == "never":
        return t("break_even_never", length=fmt.tokens(be.lengths[-1]))
    return t("break_even_one_length", length=lengths)


def _recommendation(run: Run, f: Findings, t: Text) -> Callout:
    """The verdict, then in its first sentence the reason in the reader's units, the length bands when the
    answer changes with length, and the conditions it holds under."""
    r = f.recommendation
    if r.verdict == "no_pair":
        families = ", ".join(sorted({t.family(m.family) for m in run.models}))
        return Callout(t("rec_no_pair"), t("rec_no_pair_why", families=families), [])
    text = [why(run, f, t)]
    if len(r.bands) > 1:
        text.append(bands_text(f, t))
    conditions = [_condition(code, run, f, t) for code in r.conditions]
    return Callout(t(f"rec_{r.verdict}"), " ".join(text), conditions, tone=_TONES.get(r.verdict, "neutral"))


def _money(f: Findings, t: Text) -> dict[str, str]:
    """The two models' cost in the manager's unit (a month at the workload, else a request) and the gap."""
    c = f.cost
    if c is None:
        return {}
    monthly = c.mamba.per_month is not None
    m, tr = (c.mamba.per_month, c.transformer.per_month) if monthly else (c.mamba.per_request, c.transformer.per_request)
    per = (t("per_month", requests=fmt.count(c.requests_per_day), length=fmt.tokens(c.length)) if monthly
           else t("per_request", length=fmt.tokens(c.length)))
    return {"m": fmt.usd(m), "t": fmt.usd(tr), "delta": fmt.usd(abs(m - tr)), "per": per}


def why(run: Run, f: Findings, t: Text) -> str:
    """The first sentence of the recommendation; it states the case of the decision table that decided."""
    r = f.recommendation
    if r.at_length is not None:
        failing = f.transformer if r.verdict == "only_mamba" else f.mamba
        status = f.profiles[failing.key][r.at_length].status if r.verdict != "neither" else "/".join(
            sorted({f.profiles[m.key][r.at_length].status for m in (f.mamba, f.transformer)}))
        return t(f"why_{r.verdict}", length=fmt.tokens(r.at_length), device=device_name(run),
                 status=t.status(status))
    if f.accuracy is None:
        return t("why_no_accuracy")
    d = f.accuracy.difference
    lo, hi = d.interval
    fields = {"margin": fmt.plain(ACCURACY_MARGIN * 100), "diff": points(d.value, t),
              "gain": fmt.plain(abs(d.value) * 100), "lo": fmt.signed(lo * 100), "hi": fmt.signed(hi * 100),
              **_money(f, t)}
    if r.accuracy == "unclear":
        settle = t("why_settle", n=fmt.count(r.settle), now=fmt.count(d.mamba.n)) if r.settle else ""
        return t("why_unclear", settle=settle, **fields)
    if r.accuracy == "worse":
        saving = t("why_saving", **fields) if r.cost == "cheaper" else ""
        return t("why_worse", saving=saving, **fields)
    return t(f"why_{r.accuracy}_{r.cost}", **fields)


def bands_text(f: Findings, t: Text) -> str:
    """`The answer changes with prompt length: the Transformer up to 2k; Mamba from 8k.`"""
    items = []
    last = len(f.recommendation.bands) - 1
    for i, band in enumerate(f.recommendation.bands):
        who = t(f"band_{RUNS[band.verdict]}")
        lo, hi = fmt.tokens(band.lengths[0]), fmt.tokens(band.lengths[-1])
        key = ("band_up_to" if i == 0 else "band_from" if i == last else "band_at" if lo == hi
               else "band_between")
        items.append(t(key, who=who, lo=lo, hi=hi))
    text = t("bands", items=t("band_join").join(items))
    be = f.break_even
    if be is not None and be.kind == "at":
        text += " " + t("bands_break_even", length=fmt.tokens(be.length))
    return text


def _condition(code: str, run: Run, f: Findings, t: Text) -> str:
    if code == "accuracy_margin":
        lo, _ = f.accuracy.difference.interval
        return t("cond_accuracy_margin", margin=fmt.plain(ACCURACY_MARGIN * 100), lo=fmt.signed(lo * 100))
    if code == "longer_than_break_even":
        return t("cond_break_even", length=fmt.tokens(f.break_even.length))
    if code == "measure_workload_length":
        return t("cond_measure_workload", length=fmt.tokens(f.cost.length), basis=cost_basis(f.cost.mamba, t))
    if code == "review_below_threshold":
        c = f.calibration[f.mamba.key]
        return t("cond_review", threshold=fmt.plain(c.threshold), accuracy=fmt.percent(c.accuracy_above),
                 covered=fmt.count(c.covered), total=fmt.count(c.total), share=fmt.percent(c.covered / c.total),
                 target=fmt.percent(CALIBRATION_TARGET))
    if code == "beyond_trained":
        beyond = beyond_training(run, f.mamba, f.transformer)
        return t("cond_beyond_trained", items="; ".join(
            t("cond_beyond_item", model=name, lengths=", ".join(fmt.tokens(n) for n in lengths),
              trained=fmt.tokens(next(m.trained_length for m in run.models if m.name == name)))
            for name, lengths in beyond.items()))
    if code == "transformer_failed":
        failed = ", ".join(f"{fmt.tokens(p.length)} ({t.status(p.status)})" for p in f.only_mamba_ran)
        return t("cond_transformer_failed", transformer=f.transformer.name, lengths=failed)
    pricing = run.config.get("pricing") or {}
    price = pricing.get("price_per_hour_usd")
    device = device_name(run)
    if price is None:
        return t("cond_same_device_unpriced", device=device)
    return t("cond_same_device", device=device, price=fmt.usd(float(price)))


def repeats(run: Run) -> int | str:
    """Timing repeats per cell: as configured, else as the cells counted them."""
    counted = max(((c.prefill_s and c.prefill_s.n) or 0 for c in run.cells), default=0)
    return run.config.get("repeats") or counted or "?"


def batch_size(run: Run) -> int | str:
    return run.config.get("batch_size") or next((c.batch_size for c in run.cells if c.batch_size), "?")


def device_name(run: Run) -> str:
    names = sorted({c.device_name or c.device or "" for c in run.cells} - {""})
    return ", ".join(names) or (run.config.get("pricing") or {}).get("device_name") or "?"


def _speed_card(f: Findings, t: Text) -> Card:
    if f.speed is None:
        return Card(t("card_speed"), t("not_measured"), t("speed_not_compared"))
    s = f.speed
    value = faster(s.prefill_ratio, t)
    if s.memory_ratio is not None:
        value = t("card_speed_value", speed=value, memory=less_memory(s.memory_ratio, t))
    detail = [t("card_speed_prefill", length=fmt.tokens(s.length), m=fmt.seconds(s.mamba.prefill_s),
                t=fmt.seconds(s.transformer.prefill_s))]
    if s.decode_ratio is not None:
        detail.append(t("card_speed_decode", m=fmt.ms(s.mamba.decode_ms), t=fmt.ms(s.transformer.decode_ms),
                        ratio=faster(s.decode_ratio, t)))
    if s.memory_ratio is not None:
        detail.append(t("card_speed_memory", m=fmt.size(s.mamba.peak_mem), t=fmt.size(s.transformer.peak_mem)))
    for p in f.only_mamba_ran:
        detail.append(t("card_transformer_failed_at", length=fmt.tokens(p.length), status=t.status(p.status)))
    return Card(t("card_speed"), value, " ".join(detail))


def _accuracy_card(f: Findings, t: Text) -> Card:
    if f.accuracy is None:
        return Card(t("card_accuracy"), t("not_measured"), t("accuracy_not_compared"))
    d = f.accuracy.difference
    lo, hi = d.interval
    detail = t("card_accuracy_detail", lo=fmt.signed(lo * 100), hi=fmt.signed(hi * 100),
               pairs=len(f.accuracy.pairs), m=fmt.percent(d.mamba.value), t=fmt.percent(d.transformer.value),
               n_m=fmt.count(d.mamba.n), n_t=fmt.count(d.transformer.n))
    verdict = t(f"accuracy_verdict_{f.accuracy.verdict}", margin=fmt.plain(ACCURACY_MARGIN * 100))
    return Card(t("card_accuracy"), points(d.value, t), f"{detail} {verdict}")


def _cost_value(c: Cost, t: Text) -> str:
    if c.mamba.per_month is not None:
        return t("card_cost_month", m=fmt.usd(c.mamba.per_month), t=fmt.usd(c.transformer.per_month))
    return t("card_cost_request", m=fmt.usd(c.mamba.per_request), t=fmt.usd(c.transformer.per_request))


def _cost_card(f: Findings, t: Text) -> Card:
    if f.cost is None:
        return Card(t("card_cost"), t("not_measured"), t("cost_not_compared"))
    c = f.cost
    if c.from_workload and c.requests_per_day:
        basis = t("card_cost_workload", requests=fmt.count(c.requests_per_day), length=fmt.tokens(c.length),
                  new_tokens=c.new_tokens, basis=cost_basis(c.mamba, t))
    else:
        basis = t("card_cost_no_workload", length=fmt.tokens(c.length), new_tokens=c.new_tokens)
    per_1m = t("card_cost_per_1m", m_in=fmt.usd(c.mamba.in_1m), t_in=fmt.usd(c.transformer.in_1m),
               m_out=fmt.usd(c.mamba.out_1m), t_out=fmt.usd(c.transformer.out_1m))
    detail = f"{basis} {per_1m} {break_even_text(f, t)}"
    if c.at_capacity:
        single = f.cost_one_at_a_time
        one = _cost_value(single, t) if single is not None else t("not_measured")
        detail = f"{t('card_cost_capacity', one=one)} {detail}"
    return Card(t("card_cost"), _cost_value(c, t), detail)


def _context(run: Run, f: Findings, t: Text) -> str:
    cfg = run.config
    lengths = ", ".join(fmt.tokens(n) for n in sorted({c.length_tokens for c in run.cells}))
    dtype = cfg.get("dtype") or next((c.dtype for c in run.cells if c.dtype), "?")
    text = t("context", device=device_name(run), dtype=dtype, batch=batch_size(run), repeats=repeats(run),
             lengths=lengths, cells=len(run.cells))
    if f.failures:
        listed = "; ".join(_cell_label(run, c, t) + f": {t.status(c.status)}" for c in f.failures)
        text += " " + t("context_failed", count=len(f.failures), cells=listed)
    else:
        text += " " + t("context_all_ok")
    if f.mamba is not None and f.transformer is not None:
        text += " " + t("context_pair", mamba=_model_label(f.mamba, t), transformer=_model_label(f.transformer, t))
    if f.speed is not None:
        reasons = f.speed.mamba.unstable + f.speed.transformer.unstable
        if reasons:
            text += " " + t("context_unstable", length=fmt.tokens(f.speed.length), reason=reasons[0])
    return text


def _model_label(m: Model, t: Text) -> str:
    return f"{m.name} ({t('params', count=fmt.params(m.params))})" if m.params else m.name


def _cell_label(run: Run, c: Cell, t: Text) -> str:
    return f"{run.model_name(c)} · {t.variant(variant(c))} · {fmt.tokens(c.length_tokens)}"
