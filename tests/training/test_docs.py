"""docs/training.md against the code: every config key with its type and default, and every
example config loading and training a step on small files of each kind it names."""

import re
import shutil
import tomllib
import types
import typing
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import pytest

from npgd_recon.models.checkpoint import read_metadata
from npgd_recon.training.config import Config, DataConfig, ModelConfig, TrainConfig
from npgd_recon.training.loop import train

DOC = Path(__file__).resolve().parents[2] / "docs" / "training.md"
ROW = re.compile(r"^\| `(\w+)\.(\w+)` \| ([^|]+) \| `([^`]*)` \|", re.MULTILINE)
EXAMPLES = re.findall(r"```toml\n(.*?)```", DOC.read_text(), re.DOTALL)
NAMES = {int: "int", float: "float", bool: "bool", str: "string"}


def doc_type(hint) -> str:
    """A field's type as the page writes it."""
    if isinstance(hint, types.UnionType):
        return " or ".join(doc_type(h) for h in typing.get_args(hint))
    args = typing.get_args(hint)
    if args and args[-1] is Ellipsis:
        return "array of tables" if args[0] is dict else f"array of {doc_type(args[0])}"
    if args:
        return "[" + ", ".join(doc_type(a) for a in args) + "]"
    return NAMES[hint]


def test_every_config_key_is_documented_with_its_type_and_default():
    rows = {(section, key): (kind.strip(), default)
            for section, key, kind, default in ROW.findall(DOC.read_text())}
    defaults = Config().as_dict()
    expected = set()
    for section in (ModelConfig, DataConfig, TrainConfig):
        hints = typing.get_type_hints(section)
        for f in fields(section):
            key = (section.SECTION, f.name)
            expected.add(key)
            assert key in rows, f"{'.'.join(key)} is not in {DOC.name}"
            kind, default = rows[key]
            assert kind == doc_type(hints[f.name]), key
            assert tomllib.loads(f"value = {default}")["value"] == defaults[key[0]][key[1]], key
    assert set(rows) == expected  # and no key that the code does not know


def volume() -> np.ndarray:
    """A small magnitude volume ``[y, x, z]``: an ellipsoid with a brighter core."""
    y, x, z = np.meshgrid(*(np.linspace(-1, 1, n) for n in (40, 36, 6)), indexing="ij")
    ball = (y / 0.8) ** 2 + (x / 0.7) ** 2 + (z / 1.2) ** 2
    return ((ball < 1) * (1.0 + (ball < 0.3))).astype(np.float32)


def make_source(spec: dict, root: Path) -> None:
    """Write the file(s) a source table names, under ``root``, in the kind's format."""
    kind = spec["kind"]
    if kind == "nifti":
        import nibabel

        path = root / spec["path"]
        path.parent.mkdir(parents=True, exist_ok=True)
        nibabel.save(nibabel.Nifti1Image(volume(), np.eye(4)), path)
    elif kind == "npy":
        path = root / spec["path"]
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, np.moveaxis(volume(), 2, 0) if spec.get("axes") == [0] else volume())
    elif kind == "dicom":
        from npgd_recon.io.dicom_writer import write_series
        from npgd_recon.io.geometry import PlaneGeometry

        images = np.moveaxis(volume(), 2, 0)[1:4]
        geometry = [PlaneGeometry(np.array([0.0, 0.0, 2.0 * i]), np.array([1.0, 0.0, 0.0]),
                                  np.array([0.0, 1.0, 0.0]), (1.0, 1.0), images.shape[1:], 2.0,
                                  np.zeros(3)) for i in range(len(images))]
        for name in spec["paths"]:
            path = root / name
            if path.suffix == ".dcm":  # one file of a series
                write_series(images, geometry, root / "series", series_description="doc")
                path.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(next((root / "series").glob("*.dcm")), path)
                shutil.rmtree(root / "series")
            else:
                write_series(images, geometry, path, series_description="doc")
    elif kind == "ismrmrd":
        from npgd_recon.sim.scan_writer import ScanSettings, write_scan

        for name in spec["paths"]:
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            write_scan(root / name, np.moveaxis(volume(), 2, 0)[2:4].astype(np.complex64),
                       settings=ScanSettings(coils=2, noise_readouts=0))
    else:
        assert kind == "phantom", kind


def test_the_page_has_an_example_for_each_kind_of_own_file():
    kinds = {s["kind"] for text in EXAMPLES
             for s in Config.from_tables(tomllib.loads(text)).data.train}
    assert {"nifti", "npy", "dicom", "ismrmrd"} <= kinds


@pytest.mark.parametrize("text", EXAMPLES, ids=lambda text: re.findall(r'kind = "(\w+)"',
                                                                         text)[0])
def test_each_example_config_trains_a_step_on_its_kind_of_files(text, tmp_path, monkeypatch):
    config = Config.from_tables(tomllib.loads(text))
    for spec in config.data.train + config.data.validation:
        make_source(spec, tmp_path)
    monkeypatch.chdir(tmp_path)  # the examples' paths are relative to where npgd-train runs
    small = replace(config, data=replace(config.data, shape=(32, 32), validation_slices=1),
                    train=replace(config.train, steps=1, batch_size=1))
    train(small, tmp_path / "run", progress=False)
    assert read_metadata(tmp_path / "run" / "model.safetensors")["steps"] == 1
