"""tdn.fileio: a failed write leaves the old file, a finished one has ordinary permissions."""

from __future__ import annotations

import os
import stat

import pytest

from tdn import fileio


def test_a_failing_writer_leaves_the_previous_file_and_no_temporary(tmp_path):
    target = tmp_path / "log.json"
    fileio.atomic_write_text(target, "old")

    def half_then_fail(temporary: str) -> None:
        with open(temporary, "w") as handle:
            handle.write("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        fileio.atomic_write(target, half_then_fail)
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log.json"]


def test_written_files_get_the_permissions_of_an_ordinary_open(tmp_path):
    previous = os.umask(0o022)
    try:
        plain = tmp_path / "plain.txt"
        plain.write_text("x")
        atomic = fileio.atomic_write_bytes(tmp_path / "atomic.txt", b"x")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(atomic.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode) == 0o644


def test_stale_temporaries_of_one_file_are_removed_and_others_kept(tmp_path):
    target = tmp_path / "checkpoint_last.pt"
    stale = tmp_path / ".checkpoint_last.pt.abc123.tmp"
    other = tmp_path / ".checkpoint_best.pt.abc123.tmp"
    stale.write_bytes(b"partial")
    other.write_bytes(b"partial")
    assert fileio.remove_stale_temporaries(target) == [str(stale)]
    assert not stale.exists() and other.exists()
