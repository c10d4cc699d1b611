"""`mambapoc doctor`: what this machine can run, and what a run would use."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from mambapoc.cli.app import app


@app.command()
def doctor() -> None:
    """Report the environment: torch version, device and GPU, Triton, the scan backend that will be
    used, CPU threads, and whether Japanese report fonts are available."""
    from mambapoc import envinfo, resources
    from mambapoc.models.registry import bundled_names
    from mambapoc.report.fonts import japanese_font

    info = envinfo.collect()
    jp = japanese_font()
    table = Table(title="mambapoc doctor", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    rows = [
        ("mambapoc", info["mambapoc"]),
        ("python", info["python"]),
        ("torch", info["torch"]),
        ("transformers", info["transformers"]),
        ("CPU", f"{info['cpu_model']} ({info['cpu_count']} cores, torch uses {info['torch_threads']} threads)"),
        ("CUDA", f"yes, {', '.join(info['gpus'])}" if info["cuda_available"] else "no GPU: runs on CPU"),
        ("Triton", info["triton"] or "not installed (GPU scan kernel unavailable)"),
        ("scan backends", ", ".join(info["scan_backends"])),
        ("scan backend on CPU", info["scan_backend_cpu"]),
    ]
    if info["scan_backend_cuda"]:
        rows.append(("scan backend on GPU", info["scan_backend_cuda"]))
    rows.append(("Japanese font", jp.name if jp else "none found: `--lang ja` charts would show boxes"))
    rows.append(("bundled models", f"{', '.join(bundled_names()) or 'none'} (in {resources.models_dir()})"))
    rows.append(("bundled recipes", ", ".join(resources.bundled_recipes()) or "none"))
    for k, v in rows:
        table.add_row(k, str(v))
    Console().print(table)
    typer.echo("Next: `mambapoc demo` runs the whole pipeline on the bundled sample data.")
