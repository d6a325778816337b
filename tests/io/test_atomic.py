"""All-or-nothing outputs: checks before work, staging beside the targets, commit or discard."""

import errno
import os

import pytest

from npgd_recon.io.atomic import OutputError, Outputs, atomic_output_dir


def names(folder):
    return sorted(p.name for p in folder.iterdir())


def test_folders_and_files_appear_together_with_the_users_umask(tmp_path):
    old = os.umask(0o027)
    try:
        with Outputs() as outputs:
            folder = outputs.folder(tmp_path / "out")
            (folder / "a.txt").write_text("a")
            outputs.file(tmp_path / "out.png").write_bytes(b"png")
            assert not (tmp_path / "out").exists()
    finally:
        os.umask(old)
    assert names(tmp_path) == ["out", "out.png"]
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o750
    assert (tmp_path / "out.png").stat().st_mode & 0o777 == 0o640


@pytest.mark.parametrize("interrupt", [RuntimeError, KeyboardInterrupt])
def test_an_exception_discards_everything_and_created_parents(tmp_path, interrupt):
    with pytest.raises(interrupt), Outputs() as outputs:
        outputs.folder(tmp_path / "new" / "deep" / "out")
        outputs.file(tmp_path / "x.h5")
        raise interrupt()
    assert names(tmp_path) == []


def test_paths_are_checked_before_any_work(tmp_path):
    (tmp_path / "dir.png").mkdir()
    (tmp_path / "file").write_text("x")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep").write_text("k")
    outputs = Outputs()
    with pytest.raises(OutputError, match="dir.png is a folder"):
        outputs.file(tmp_path / "dir.png")
    with pytest.raises(OutputError, match="is not a folder"):
        outputs.folder(tmp_path / "file")
    with pytest.raises(OutputError, match="not a folder"):
        outputs.file(tmp_path / "file" / "x.h5")
    with pytest.raises(OutputError, match="not empty") as error:
        outputs.folder(tmp_path / "full")
    assert error.value.needs_force
    outputs.discard()
    assert names(tmp_path) == ["dir.png", "file", "full"]


def test_force_replaces_and_a_failed_commit_restores(tmp_path, monkeypatch):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old").write_text("old")
    with atomic_output_dir(tmp_path / "out", force=True) as staging:
        (staging / "new").write_text("new")
    assert names(tmp_path) == ["out"] and names(tmp_path / "out") == ["new"]

    outputs = Outputs(force=True)
    (outputs.folder(tmp_path / "out") / "newer").write_text("x")
    outputs.file(tmp_path / "b.txt").write_text("b")
    real_replace = os.replace

    def failing(src, dst):
        if str(dst).endswith("b.txt"):
            raise OSError("disk full")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing)
    with pytest.raises(OSError, match="disk full"):
        outputs.commit()
    monkeypatch.undo()
    assert names(tmp_path) == ["out"] and names(tmp_path / "out") == ["new"]


def test_an_os_error_inside_the_block_names_the_users_path(tmp_path):
    with pytest.raises(OSError) as error, Outputs() as outputs:
        staged = outputs.folder(tmp_path / "series")
        outputs.file(tmp_path / "series.png")
        raise OSError(errno.ENOSPC, "No space left on device", str(staged / "IM00001.dcm"))
    assert str(error.value) == (f"[Errno {errno.ENOSPC}] No space left on device: "
                                f"'{tmp_path / 'series' / 'IM00001.dcm'}'")
    with pytest.raises(OSError) as error, Outputs() as outputs:
        staged = outputs.file(tmp_path / "images.h5")
        raise FileNotFoundError(errno.ENOENT, f"Unable to create file (name = '{staged}')")
    assert ".part" not in str(error.value) and str(tmp_path / "images.h5") in str(error.value)
    assert names(tmp_path) == []
