"""The recipe-schema helper that every kind of recipe is read with."""

from __future__ import annotations

from pathlib import Path

import pytest

from mambapoc.errors import UserError
from mambapoc.recipe import load_recipe
from mambapoc.resources import find_recipe
from mambapoc.schema import Fields, apply_overrides, read_yaml


def test_overrides_set_nested_fields_as_yaml():
    raw = apply_overrides({"compare": {"lengths": [1024]}}, ["compare.lengths=[512, 2k]", "report.lang=ja",
                                                             "compare.instances=3"])
    assert raw == {"compare": {"lengths": [512, "2k"], "instances": 3}, "report": {"lang": "ja"}}
    for bad, message in (("compare", "expected KEY=VALUE"), ("compare.lengths.x=1", "is a value, not a section"),
                         ("a=[1", "not valid YAML")):
        with pytest.raises(UserError, match=message):
            apply_overrides({"compare": {"lengths": [1]}}, [bad])


@pytest.mark.parametrize("data,call,message", [
    ({"steps": 0}, lambda f: f.integer("steps", minimum=1), "r.yaml: train.steps: expected a value >= 1, got 0"),
    ({"steps": 2.5}, lambda f: f.integer("steps"), "train.steps: expected an integer, got 2.5"),
    ({"steps": True}, lambda f: f.integer("steps"), "expected an integer, got True"),
    ({"lr": float("nan")}, lambda f: f.number("lr", minimum=0), "train.lr: expected a value >= 0"),
    ({}, lambda f: f.integer("steps"), "train.steps: is required"),
    ({"device": "gpu"}, lambda f: f.choice("device", ("cpu", "cuda")), "expected one of cpu, cuda, got 'gpu'"),
    ({"paths": {"a": 1}}, lambda f: f.strings("paths"), "train.paths: expected a list"),
])
def test_fields_name_the_file_and_the_field(data, call, message):
    top = Fields({"train": data}, ("train",), "recipe r.yaml")
    with pytest.raises(UserError, match=message.replace(".", r"\.").replace("(", r"\(")):
        call(top.section("train", ("steps", "lr", "device", "paths")))


def test_unknown_keys_and_non_mappings_are_refused():
    with pytest.raises(UserError, match="r.yaml: colour: unknown section"):
        Fields({"colour": 1}, ("name",), "recipe r.yaml")
    with pytest.raises(UserError, match="r.yaml: compare: expected a mapping"):
        Fields({"compare": 5}, ("compare",), "recipe r.yaml").section("compare", ("models",))


def test_unreadable_recipe_files_are_one_line_errors(tmp_path):
    binary = tmp_path / "b.yaml"
    binary.write_bytes(b"\x89PNG\x00\xff\xfe")
    broken = tmp_path / "y.yaml"
    broken.write_text("compare:\n  lengths: [1k\n")
    for path, message in ((binary, "is not a text file"), (broken, "is not valid YAML at line"),
                          (tmp_path, "is not a file")):
        with pytest.raises(UserError, match=message):
            read_yaml(path)


def test_a_run_recipe_is_checked_whole_before_anything_runs(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("compare: {lengths: 512}\nreport: {lang: [en, fr]}\n")
    with pytest.raises(UserError, match="report.lang: expected one or more of en, ja, got fr"):
        load_recipe(recipe)
    assert load_recipe(recipe, ["report.lang=[ja]"]).compare.lengths == [512]


def test_bundled_recipes_are_found_by_name_from_anywhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert find_recipe("recipes/demo.yaml").name == "demo.yaml" and find_recipe("demo").is_file()
    (tmp_path / "demo.yaml").write_text("name: mine\n")
    assert find_recipe("demo.yaml") == Path("demo.yaml"), "a file of the user's wins over a bundled recipe"
    with pytest.raises(UserError, match="bundled recipes: .*demo"):
        find_recipe("elsewhere/demo.yaml")
