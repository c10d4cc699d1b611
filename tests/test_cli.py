"""The command line as a user meets it: help that documents every option, one-line errors."""

from __future__ import annotations

import re

import pytest
import typer
from typer.testing import CliRunner

from mambapoc import __version__
from mambapoc.cli import app, main

runner = CliRunner()


def _commands(group, prefix: tuple[str, ...] = ()):
    for name, cmd in group.commands.items():
        yield (*prefix, name), cmd
        if hasattr(cmd, "commands"):
            yield from _commands(cmd, (*prefix, name))


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"mambapoc {__version__}"


def test_every_stage_command_exists():
    names = {" ".join(path) for path, _ in _commands(typer.main.get_command(app))}
    for expected in ("doctor", "ingest", "datasets", "compare", "report", "run", "demo", "train", "tasks"):
        assert expected in names


def test_every_option_of_every_command_has_help():
    for path, cmd in _commands(typer.main.get_command(app)):
        assert cmd.help, f"{' '.join(path)} has no description"
        for param in cmd.params:
            if param.param_type_name == "option":
                assert param.help, f"{' '.join(path)} {param.opts[0]} has no help"
        result = runner.invoke(app, [*path, "--help"])
        assert result.exit_code == 0, path


def test_unknown_option_is_one_line(capsys):
    with pytest.raises(SystemExit) as e:
        main(["compare", "--no-such-option"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert re.search(r"no such option", err, re.I)


def test_missing_recipe_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["run", str(tmp_path / "missing.yaml")])
    assert e.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: recipe {tmp_path / 'missing.yaml'} does not exist (bundled recipes: ")
    assert "\n" not in err and "demo" in err


def test_doctor_reports_backend(capsys):
    main(["doctor"])
    out = capsys.readouterr().out
    assert "scan backend on CPU" in out and "torch" in out
