"""The run folder: an existing run is never replaced silently, nothing is created before the config
and data are known good, files follow the umask, the log closes however training ends."""

import os
from dataclasses import replace

import pytest

from npgd_recon.cli.train import main
from npgd_recon.models.checkpoint import read_metadata
from npgd_recon.training.config import Config, load_config
from npgd_recon.training.logger import RunLog
from npgd_recon.training.loop import train
from npgd_recon.training.run import RunExistsError

CONFIG = ("[model]\niterations = 1\nfeatures = 2\n"
          "[data]\ntrain = [{kind = 'phantom', count = 2}]\n"
          "validation = [{kind = 'phantom', count = 1, seed = 5}]\nvalidation_slices = 1\n"
          "shape = [16, 16]\n"
          "[train]\nsteps = 1\nbatch_size = 1\n")


@pytest.fixture
def config(tmp_path) -> Config:
    path = tmp_path / "c.toml"
    path.write_text(CONFIG)
    return load_config(path)


def test_a_new_run_refuses_a_used_folder_unless_forced(tmp_path, config):
    run = tmp_path / "run"
    train(config, run, progress=False)
    before = (run / "model.safetensors").read_bytes()
    with pytest.raises(RunExistsError, match="run folder .*run exists and is not empty") as error:
        train(replace(config, train=replace(config.train, steps=2)), run, progress=False)
    assert error.value.needs_force
    assert (run / "model.safetensors").read_bytes() == before
    (run / "notes.txt").write_text("mine")
    train(replace(config, train=replace(config.train, steps=2)), run, force=True, progress=False)
    assert read_metadata(run / "model.safetensors")["steps"] == 2
    assert [r.split(",")[0] for r in (run / "log.csv").read_text().splitlines()] == [
        "step", "1", "2"]  # a new log, not the old one continued
    assert (run / "notes.txt").read_text() == "mine"  # only the run's own files are replaced


def test_the_command_says_how_to_replace_a_run(tmp_path, capsys):
    (tmp_path / "c.toml").write_text(CONFIG)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "log.csv").write_text("step\n")
    args = [str(tmp_path / "c.toml"), "--out", str(tmp_path / "run"), "--no-progress"]
    assert main(args) == 2
    message = capsys.readouterr().err
    assert message.endswith("--resume continues the run in it (pass --force to replace it)\n")
    assert message.count("\n") == 1
    with pytest.raises(SystemExit):
        main(args + ["--resume", "--force"])


def test_resuming_continues_a_run_and_starts_one_where_there_is_none(tmp_path, config):
    train(config, tmp_path / "new", resume=True, progress=False)
    assert read_metadata(tmp_path / "new" / "model.safetensors")["steps"] == 1
    train(replace(config, train=replace(config.train, steps=2)), tmp_path / "new", resume=True,
          progress=False)
    rows = (tmp_path / "new" / "log.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows] == ["step", "1", "2"]


@pytest.mark.parametrize("problem", ["config", "data"])
def test_a_config_or_data_error_leaves_no_run_folder(tmp_path, capsys, problem):
    faces = (f"[data]\noperator = 'block-average'\nshape = [24, 24]\n"
             f"train = [{{kind = 'folder', path = '{tmp_path / 'absent'}'}}]\n"
             f"validation = [{{kind = 'lfw-faces', split = 'test'}}]\n")
    bad = {"config": CONFIG.replace("[data]\n", "[data]\noperator = 'radial'\n"),
           "data": "[model]\nproximal = 'linear-swish'\n" + faces}
    (tmp_path / "c.toml").write_text(bad[problem])
    assert main([str(tmp_path / "c.toml"), "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    message = capsys.readouterr().err
    assert ("data.operator" if problem == "config" else "image folder not found") in message
    assert not (tmp_path / "run").exists()


def test_every_run_file_follows_the_umask(tmp_path, config):
    previous = os.umask(0o027)
    try:
        train(config, tmp_path / "run", progress=False)
    finally:
        os.umask(previous)
    modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "run").iterdir()}
    assert modes == {"model.safetensors": 0o640, "train_state.pt": 0o640, "log.csv": 0o640}


def test_the_log_is_written_and_closed_however_the_block_ends(tmp_path):
    path = tmp_path / "log.csv"
    with pytest.raises(RuntimeError), RunLog(path) as log:
        log.row(1, 0.5, 1e-4, 1.0, None, 0.2)
        log.row(2, 0.25, 1e-4, 1.0, {"snr_db": 20.0, "ssim": 0.5}, 0.4)
        raise RuntimeError("a failed step")
    assert path.read_text().splitlines() == [
        "step,loss,lr,alpha,val_snr_db,val_ssim,seconds", "1,0.5,0.0001,1.0000,,,0.2",
        "2,0.25,0.0001,1.0000,20.000,0.5000,0.4"]
    with RunLog(path, append=True) as log:
        log.row(3, 0.125, 1e-4, 1.0, None, 0.6)
    assert path.read_text().splitlines()[-1].startswith("3,")
    with RunLog(tmp_path / "other.csv", enabled=False) as log:  # a torchrun rank other than 0
        log.row(1, 0.5, 1e-4, 1.0, None, 0.2)
    assert not (tmp_path / "other.csv").exists()
