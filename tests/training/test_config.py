"""Training configs: validated once into frozen dataclasses, one-line errors naming the key, every
shipped config and every shipped model's stored config still loading."""

import dataclasses
import tomllib
from pathlib import Path

import pytest

from npgd_recon.core.errors import NpgdError
from npgd_recon.models.checkpoint import read_metadata
from npgd_recon.training.config import Config, ConfigError, load_config

ROOT = Path(__file__).resolve().parents[2]


def tables(text: str) -> Config:
    return Config.from_tables(tomllib.loads(text))


def test_defaults_live_in_the_dataclasses_and_the_gpu_config_overrides_them():
    config = load_config(None)
    assert config == Config() and config.train.workers == 0
    assert config.data.gamma == (1.0, 1.0) and config.data.invert == 0.0
    gpu = load_config(ROOT / "configs" / "gpu-paper.toml")
    assert gpu.train.workers == 14 and gpu.train.batch_size == 16
    assert (gpu.model.iterations, gpu.model.blocks, gpu.model.features) == (10, 1, 128)
    assert {s["kind"] for s in gpu.data.train} >= {"cache", "nifti", "phantom"}
    assert gpu.data.coils == (1, 16) and gpu.data.coil_range == (1, 16)


def test_values_are_converted_to_their_fields_types():
    config = tables("[data]\naccel = 4\nshape = [64, 48]\ncoils = 3\n[train]\nmax_seconds = 5\n")
    assert config.data.accel == 4.0 and isinstance(config.data.accel, float)
    assert config.data.shape == (64, 48) and config.data.coils == 3
    assert config.train.max_seconds == 5.0 and isinstance(config.train.max_seconds, float)


@pytest.mark.parametrize("text, message", [
    ("[train]\nworkers = 1.5", "config train.workers must be a whole number, got 1.5"),
    ("[train]\nworkers = -1", "config train.workers must be a whole number >= 0, got -1"),
    ("[train]\nsteps = 0", "config train.steps must be a whole number >= 1"),
    ("[train]\namp = 1", "config train.amp must be true or false, got 1"),
    ("[train]\nbeta = 2.0", "config train.beta must be in [0, 1]"),
    ("[data]\ncoils = [0, 4]", "config data.coils must be a count >= 1"),
    ("[data]\ncoils = [4, 2]", "config data.coils must be a count >= 1"),
    ("[data]\ncoils = [1, 2, 3]", "config data.coils must be a whole number or [whole number"),
    ("[data]\ncoils = '8'", "config data.coils must be a whole number"),
    ("[data]\ngamma = [2.0, 1.0]", "config data.gamma must be two positive numbers"),
    ("[data]\ninvert = 1.5", "config data.invert must be a probability"),
    ("[data]\nmask = 'spiral'", "config data.mask must be one of vdrad"),
    ("[data]\noperator = 'radial'", "config data.operator must be one of cartesian"),
    ("[data]\ntrain = []", "config data.train must be a non-empty list of tables with a kind"),
    ("[data]\nvalidation = [{path = 'a.nii'}]", "config data.validation must be a non-empty"),
    ("[data]\noperator = 'block-average'\nshape = [23, 24]", "config data.shape must be two even"),
    ("[data]\nnoise_scale = 'log'", "config data.noise_scale must be 'linear' when data.noise"),
    ("[data]\nnoise_scale = 'exp'", "config data.noise_scale must be 'linear' or 'log'"),
    ("[data]\nshapes = [[64]]", "config data.shapes must be a list of [whole number, whole"),
    ("[data]\nshapes = [[0, 64]]", "config data.shapes must be a list of [y, x] sizes >= 1"),
    ("[data]\nmap_sets = 2\ncoils = 8", "config data.map_sets must be 1, or 2 with maps = "),
    ("[data]\nmap_sets = 2\nmaps = 'espirit'", "config data.map_sets must be 1, or 2 with"),
    ("[data]\nmap_sets = 3\nmaps = 'espirit'\ncoils = 8", "config data.map_sets must be 1"),
    ("[data]\nmap_error = 0.1\ncoils = 8", "config data.map_error must be 0, or > 0 with"),
    ("[data]\nmap_error = -0.1\nmaps = 'espirit'", "config data.map_error must be 0, or > 0"),
    ("[data]\ncoil_geometry = 'helmet'", "config data.coil_geometry must be one of birdcage"),
    ("[data]\nvalidation_coil_geometry = 1", "config data.validation_coil_geometry must be a"),
    ("[data]\ntexture = [0.1, 0.05]", "config data.texture must be [low, high], 0 <= low"),
    ("[data]\ntexture = 0.1", "config data.texture must be"),
    ("[data]\noperator = 'block-average'\nshape = [24, 24]\ntexture = [0.0, 0.1]",
     "config data.texture must be [0, 0] with the block-average operator"),
    ("[model]\nproximal = 'transformer'", "config model.proximal must be one of resnet"),
    ("[model]\nproximal = 'unet'\nblocks = 0", "config model.blocks must be >= 1 with the unet"),
    ("[model]\nproximal = 'unet'\nunshuffle = 2", "config model.unshuffle must be 1 unless"),
    ("[model]\nunshuffle = 0", "config model.unshuffle must be >= 1"),
    ("[model]\nfinal_noise = true", "config model.final_noise must be false without final_dc"),
    ("[model]\nalpha_init = 0", "config model.alpha_init must be > 0"),
    ("[model]\ndepth = 3", "unknown config key 'model.depth'; known: iterations"),
    ("[optimiser]\nlr = 1", "unknown config table [optimiser]; known: model, data, train"),
    ("model = 3", "config model must be a table, got 3"),
])
def test_a_bad_value_is_one_line_that_names_the_key(text, message):
    with pytest.raises(ConfigError) as error:
        tables(text)
    assert str(error.value).startswith(message) and "\n" not in str(error.value)
    assert isinstance(error.value, NpgdError)


def test_load_config_names_the_file(tmp_path):
    (tmp_path / "bad.toml").write_text("[train]\nworkers = 1.5\n")
    with pytest.raises(ConfigError, match=r"bad.toml: config train.workers"):
        load_config(tmp_path / "bad.toml")
    (tmp_path / "broken.toml").write_text("[train\n")
    with pytest.raises(ConfigError, match="broken.toml: invalid TOML"):
        load_config(tmp_path / "broken.toml")
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "absent.toml")


def test_a_config_is_frozen_and_replacing_a_value_validates_it_again():
    config = Config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.train.steps = 3
    assert dataclasses.replace(config.train, steps=3).steps == 3
    with pytest.raises(ConfigError, match="config train.workers"):
        dataclasses.replace(config.train, workers=-2)


def test_the_plain_form_reads_back_and_every_shipped_model_s_config_loads():
    """as_dict is what checkpoints store (tables and lists, as the TOML reads); the configs stored
    in the shipped models load into today's dataclasses."""
    config = load_config(ROOT / "configs" / "cpu-allround-noise.toml")
    plain = config.as_dict()
    assert plain["data"]["coils"] == [1, 16] and plain["data"]["train"][0]["kind"] == "nifti"
    assert Config.from_tables(plain) == config
    shipped = sorted((ROOT / "npgd_recon" / "models" / "weights").glob("*.safetensors"))
    assert shipped
    for path in shipped:
        Config.from_tables(read_metadata(path)["config"])


def test_every_shipped_config_loads_and_the_data_ablation_varies_only_the_data():
    """Each config in configs/ and configs/ablation/ loads; the ablation's three mixes share
    everything but data.train, grow by inclusion, and never train on their validation
    subject."""
    paths = sorted((ROOT / "configs").glob("*.toml")) + sorted(
        (ROOT / "configs" / "ablation").glob("*.toml"))
    assert len(paths) > 10
    for path in paths:
        load_config(path)
    mixes = {n: load_config(ROOT / "configs" / "ablation" / f"data-{n}.toml").as_dict()
             for n in ("templates", "mr", "all")}
    trains = {n: [tuple(sorted(s.items())) for s in c["data"].pop("train")]
              for n, c in mixes.items()}
    assert mixes["templates"] == mixes["mr"] == mixes["all"]
    assert set(trains["templates"]) < set(trains["mr"]) < set(trains["all"])
    validation = {s["path"] for s in mixes["all"]["data"]["validation"]}
    assert not validation & {dict(s).get("path") for s in trains["all"]}


def test_the_proximal_ablation_varies_only_the_proximal():
    arms = {n: load_config(ROOT / "configs" / "ablation" / f"proximal-{n}.toml").as_dict()
            for n in ("resnet", "unet", "resnet-k2", "resnet-shuffle")}
    models = {n: {k: c["model"].pop(k) for k in ("proximal", "blocks", "features", "unshuffle")}
              for n, c in arms.items()}
    assert arms["resnet"] == arms["unet"] == arms["resnet-k2"] == arms["resnet-shuffle"]
    assert models["resnet"]["proximal"] == "resnet" and models["unet"]["proximal"] == "unet"
    assert models["resnet-k2"] == {**models["resnet"], "blocks": 2}
    assert models["resnet-shuffle"] == {**models["resnet"], "features": 64, "unshuffle": 2}


def test_the_body_data_ablation_varies_only_the_data_and_adds_only_body_mr():
    arms = {n: load_config(ROOT / "configs" / "ablation" / f"finetune-{n}.toml").as_dict()
            for n in ("body", "control")}
    trains = {n: [tuple(sorted(s.items())) for s in c["data"].pop("train")]
              for n, c in arms.items()}
    assert arms["body"] == arms["control"]
    added = {dict(s)["name"] for s in set(trains["body"]) - set(trains["control"])}
    assert set(trains["control"]) < set(trains["body"])
    assert added == {"myoqmri-calf-mese", "myoqmri-calf-dixon", "fatwater-ankle-gre"}
