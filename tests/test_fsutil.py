"""The one place files and directories are written atomically."""

from __future__ import annotations

import os

import pytest

from mambapoc.fsutil import atomic_path, replace_dir, write_atomic


def test_write_atomic_replaces_whole_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "a.json"
    target.write_text("old")
    write_atomic(target, "new ✓")
    write_atomic(tmp_path / "b.bin", b"\x00\x01")
    assert target.read_text(encoding="utf-8") == "new ✓"
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.bin"]
    assert oct(os.stat(target).st_mode & 0o777) == oct(0o644)


def test_failed_writer_keeps_the_old_file(tmp_path):
    target = tmp_path / "ckpt"
    target.write_text("previous")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "previous"
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]


def test_replace_dir_swaps_in_the_new_directory(tmp_path):
    old, new = tmp_path / "ds", tmp_path / ".ds.tmp"
    old.mkdir()
    (old / "x").write_text("old")
    new.mkdir()
    (new / "y").write_text("new")
    assert replace_dir(new, old) == old
    assert [p.name for p in old.iterdir()] == ["y"]
    assert [p.name for p in tmp_path.iterdir()] == ["ds"]
