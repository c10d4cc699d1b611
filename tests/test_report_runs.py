"""A report beyond one run as measured: another workload or price, several runs side by side, and what
of the dataset it may show."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from mambapoc.cli import main
from mambapoc.errors import UserError
from mambapoc.report import build, findings
from mambapoc.report.combine import Workload, load
from mambapoc.report.load import load_run

FIXTURE = Path(__file__).parent / "data" / "run_fixture"


def test_a_new_workload_changes_the_costs_and_nothing_measured():
    before = findings.compute(load_run(FIXTURE))
    after = findings.compute(load([FIXTURE], Workload(requests_per_day=100)))
    assert after.speed == before.speed and after.accuracy == before.accuracy and after.profiles == before.profiles
    assert after.cost.mamba.per_request == pytest.approx(before.cost.mamba.per_request)
    assert after.cost.mamba.per_month == pytest.approx(before.cost.mamba.per_month * 100 / 20000)
    longer = findings.compute(load([FIXTURE], Workload(length_tokens=16384, new_tokens=256)))
    assert (longer.cost.length, longer.cost.new_tokens, longer.cost.mamba.basis) == (16384, 256, "measured")


def test_a_new_price_reprices_every_cell_from_its_throughput():
    run = load([FIXTURE], Workload(price_per_hour=0.70))  # the fixture's price doubled
    base = {c.cell_id: c for c in load_run(FIXTURE).cells}
    for c in run.cells:
        if c.ok:
            assert c.cost_usd_per_1m_input == pytest.approx(2 * base[c.cell_id].cost_usd_per_1m_input, rel=1e-3)
            assert c.prefill_s == base[c.cell_id].prefill_s
    assert run.config["pricing"]["price_per_hour_usd"] == 0.70
    with pytest.raises(UserError, match="positive number"):
        load([FIXTURE], Workload(price_per_hour=float("nan")))


def test_report_cli_re_renders_for_another_workload(tmp_path, capsys):
    main(["report", str(FIXTURE), "--format", "md", "--out", str(tmp_path), "--requests-per-day", "100",
          "--workload-length", "16k"])
    md = (tmp_path / "summary.md").read_text()
    assert "100 requests a day of 16k tokens" in md


def _copy(tmp_path: Path, name: str, device: str, dataset: str = "payments-api") -> Path:
    run = tmp_path / name
    shutil.copytree(FIXTURE, run)
    text = (run / "results.jsonl").read_text().replace('"device_name": "Tesla T4"', f'"device_name": "{device}"')
    (run / "results.jsonl").write_text(text)
    ds = yaml.safe_load((run / "dataset.yaml").read_text())
    ds["name"] = dataset
    (run / "dataset.yaml").write_text(yaml.safe_dump(ds))
    return run


def test_two_runs_of_one_dataset_make_one_report_with_the_device_as_a_dimension(tmp_path, capsys):
    cpu, gpu = _copy(tmp_path, "cpu-run", "cpu: Some EPYC"), _copy(tmp_path, "gpu-run", "NVIDIA H200")
    run = load([cpu, gpu])
    names = [m.name for m in run.models]
    assert names == ["mamba-130m (cpu)", "pythia-160m (cpu)", "mamba-130m (NVIDIA H200)",
                     "pythia-160m (NVIDIA H200)"]
    assert len(run.cells) == 48 and len({c.cell_id for c in run.cells}) == 48
    out = tmp_path / "merged"
    main(["report", str(cpu), str(gpu), "--format", "md", "--out", str(out)])
    md = (out / "summary.md").read_text()
    assert "cpu-run, gpu-run" in md and "mamba-130m (cpu)" in md
    with pytest.raises(SystemExit):
        main(["report", str(cpu), str(gpu), "--format", "md"])
    assert "needs --out" in capsys.readouterr().err


def test_runs_of_different_datasets_are_refused(tmp_path, capsys):
    a, b = _copy(tmp_path, "a", "cpu: x"), _copy(tmp_path, "b", "cpu: x", dataset="other-logs")
    with pytest.raises(SystemExit) as e:
        main(["report", str(a), str(b), "--out", str(tmp_path / "m")])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 1 and "different datasets" in err and "\n" not in err


def test_no_examples_leaves_every_record_out(tmp_path):
    sample = yaml.safe_load((FIXTURE / "dataset.yaml").read_text())["samples"][0]["text"]
    with_examples = build(FIXTURE, formats=("html", "md"), out_dir=tmp_path / "a")
    without = build(FIXTURE, formats=("html", "md"), out_dir=tmp_path / "b", examples=False)
    assert sample[:40] in with_examples["html"].read_text(encoding="utf-8")
    for path in without.values():
        assert sample[:40] not in path.read_text(encoding="utf-8")
    assert "--no-examples" in without["html"].read_text(encoding="utf-8")


def test_records_of_an_unmasked_dataset_never_reach_the_report(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(FIXTURE, run)
    ds = yaml.safe_load((run / "dataset.yaml").read_text())
    ds["masking"] = {"enabled": False}
    (run / "dataset.yaml").write_text(yaml.safe_dump(ds))
    html = build(run, formats=("html",), out_dir=tmp_path / "r")["html"].read_text(encoding="utf-8")
    assert ds["samples"][0]["text"][:40] not in html and "without masking" in html


def _report_text(tmp_path: Path, log: str, mask_extra: list[str]) -> str:
    """Every report file of a run whose dataset was ingested from `log`, as one string."""
    from mambapoc.ingest import ingest
    from mambapoc.ingest.dataset import load_records, read_manifest

    src = tmp_path / f"src-{len(mask_extra)}"
    src.mkdir()
    (src / "app.log").write_text(log)
    ds = ingest([src], name="secrets", data_dir=tmp_path / f"data-{len(mask_extra)}", mask_extra=mask_extra,
                progress=False).path
    run = tmp_path / f"run-{len(mask_extra)}"
    shutil.copytree(FIXTURE, run)
    (run / "dataset.yaml").write_text(yaml.safe_dump({**read_manifest(ds), "samples": load_records(ds, limit=5)},
                                                     allow_unicode=True))
    written = build(run, out_dir=tmp_path / f"report-{len(mask_extra)}")
    from pypdf import PdfReader

    texts = [p.read_text(encoding="utf-8") for kind, p in written.items() if kind != "pdf"]
    texts.append("".join(page.extract_text() for page in PdfReader(written["pdf"]).pages))
    return "\n".join(texts)


def test_only_masked_text_reaches_the_report(tmp_path):
    pem_body = "MIIEpAIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gunVTLw7onLRnrq0"
    log = ("2024-03-11 10:00:01 INFO support: call the customer back on +81 3-1234-5678 today\n"
           "2024-03-11 10:00:02 ERROR deploy: leaked key -----BEGIN RSA PRIVATE KEY-----\n"
           f"{pem_body}\n-----END RSA PRIVATE KEY-----\n"
           "2024-03-11 10:00:03 INFO api: request served in 12 ms\n")
    unmasked = _report_text(tmp_path, log, [])
    assert "3-1234-5678" in unmasked, "without the phone rule the number would be shown (the test can fail)"
    masked = _report_text(tmp_path, log, ["phone"])
    assert "1234-5678" not in masked and pem_body[:24] not in masked
    assert "The masking rules that ran" in masked and "phone" in masked and "private_key" in masked
