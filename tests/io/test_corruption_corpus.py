"""A seeded corpus of broken ISMRMRD files: each ends in a reconstruction or one line + exit 2.

135 variants of one small two-coil file: header numbers replaced by text or left empty, header
elements deleted, the XML cut short; acquisitions with out-of-range encode indices, NaN/Inf
samples, an echo centre beyond the readout, channel counts that disagree with the header, random
flags, empty data; files truncated and bytes flipped. Every run goes through ``npgd-recon``'s
``main`` in-process (zero filling, so a corpus costs seconds) and must either write a complete
DICOM series or print exactly one line on stderr, exit 2 and leave nothing behind. A series
written from a header with an empty number must still pass dciodvfy (an optional number is
ignored with a logged warning; a number reconstruction needs is one line and exit 2).
"""

from __future__ import annotations

import logging
import re
import shutil
import warnings

import h5py
import numpy as np
import pydicom
import pytest

from npgd_recon.cli.recon import main as recon
from npgd_recon.sim.phantoms import shepp_logan
from npgd_recon.sim.scan_writer import ScanSettings, write_scan
from tests.conftest import dciodvfy_findings

HEADER_NUMBERS = 20
HEADER_BLANKS = 15
HEADER_DELETIONS = 15
HEADER_CUTS = 5
ACQUISITION_KINDS = ("encode", "nan", "inf", "centre", "channels", "flags", "empty",
                     "samples")
ACQUISITIONS_PER_KIND = 6
TRUNCATIONS = 12
FLIPS = 20


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "base.h5"
    write_scan(path, shepp_logan((2, 24, 20)),
               settings=ScanSettings(coils=2, noise=0.01, noise_readouts=4, oversampling=2))
    with h5py.File(path, "r") as file:
        xml = file["dataset/xml"][0]
        table = file["dataset/data"][:]
    return path, (xml.decode() if isinstance(xml, bytes) else xml), table


def rewrite(path, xml: str, table: np.ndarray) -> None:
    with h5py.File(path, "w") as file:
        group = file.create_group("dataset")
        dataset = group.create_dataset("xml", (1,), dtype=h5py.special_dtype(vlen=bytes))
        dataset[0] = xml.encode()
        group.create_dataset("data", data=table, maxshape=(None,), chunks=True)


def header_variant(xml: str, kind: str, rng: np.random.Generator) -> str:
    if kind in ("number", "blank"):
        spans = [m.span(1) for m in re.finditer(r">(-?[0-9.]+)<", xml)]
        start, stop = spans[rng.integers(len(spans))]
        text = "" if kind == "blank" else rng.choice(["abc", "", "1e999", "-5", "nan", "0x10"])
        return xml[:start] + text + xml[stop:]
    if kind == "delete":
        spans = [m.span() for m in re.finditer(r"<(\w+)>[^<]*</\1>", xml)]
        start, stop = spans[rng.integers(len(spans))]
        return xml[:start] + xml[stop:]
    return xml[:int(rng.integers(10, len(xml) - 1))]


def acquisition_variant(table: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    table = table.copy()
    heads = table["head"]
    i = int(rng.integers(len(table)))
    if kind == "encode":
        heads["idx"]["kspace_encode_step_1"][i] = rng.choice([-1, 999, 65535])
    elif kind in ("nan", "inf"):
        data = table["data"][i].copy()
        data[rng.integers(len(data))] = np.nan if kind == "nan" else np.inf
        table["data"][i] = data
    elif kind == "centre":
        heads["center_sample"][i] = heads["number_of_samples"][i] + rng.integers(1, 50)
    elif kind == "channels":
        heads["active_channels"][i] = rng.choice([0, 1, 3, 64])
    elif kind == "flags":
        heads["flags"][i] = np.uint64(rng.integers(0, 2**63))
    elif kind == "empty":
        table["data"][i] = np.zeros(0, np.float32)
        heads["number_of_samples"][i] = 0
    else:
        heads["number_of_samples"][i] = rng.choice([1, 7, 4096])
    table["head"] = heads
    return table


def variants():
    cases = [("number", i) for i in range(HEADER_NUMBERS)]
    cases += [("blank", i) for i in range(HEADER_BLANKS)]
    cases += [("delete", i) for i in range(HEADER_DELETIONS)]
    cases += [("cut", i) for i in range(HEADER_CUTS)]
    cases += [(k, i) for k in ACQUISITION_KINDS for i in range(ACQUISITIONS_PER_KIND)]
    cases += [("truncate", i) for i in range(TRUNCATIONS)]
    cases += [("flip", i) for i in range(FLIPS)]
    return cases


def make(base, kind: str, seed: int, path) -> None:
    source, xml, table = base
    rng = np.random.default_rng(seed)
    if kind in ("number", "blank", "delete", "cut"):
        rewrite(path, header_variant(xml, kind, rng), table)
    elif kind in ACQUISITION_KINDS:
        rewrite(path, xml, acquisition_variant(table, kind, rng))
    else:
        data = bytearray(source.read_bytes())
        if kind == "truncate":
            data = data[:int(rng.integers(0, len(data)))]
        else:
            for _ in range(int(rng.integers(1, 8))):
                data[int(rng.integers(len(data)))] ^= 1 << int(rng.integers(8))
        path.write_bytes(bytes(data))


def test_the_corpus_is_large_enough():
    assert len(variants()) >= 100


def test_the_base_file_reconstructs(base, tmp_path):
    """Else every variant would end in one line, and the writing path would go untested."""
    assert recon([str(base[0]), "--out", str(tmp_path / "s"), "--method", "zerofill",
                  "--quiet"]) == 0


@pytest.mark.parametrize("kind, seed", variants())
def test_broken_file_reconstructs_or_fails_in_one_line(base, tmp_path, capsys, kind, seed):
    broken = tmp_path / "in" / "broken.h5"
    broken.parent.mkdir()
    make(base, kind, seed, broken)
    work = tmp_path / "work"
    work.mkdir()
    out = work / "series"
    with warnings.catch_warnings(record=True) as caught:  # a warning is more lines on stderr
        warnings.simplefilter("always")
        status = recon([str(broken), "--out", str(out), "--method", "zerofill", "--png",
                        "--quiet"])
    err = capsys.readouterr().err
    assert [str(w.message) for w in caught] == []
    if status == 0:
        assert sorted(p.name for p in work.iterdir()) == ["series", "series.png"]
        assert any(out.iterdir())
        if kind == "blank" and shutil.which("dciodvfy"):
            assert all(dciodvfy_findings(f) == [] for f in out.iterdir())
    else:
        assert status == 2, err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("npgd-recon: error: "), err
        assert list(work.iterdir()) == []
    shutil.rmtree(tmp_path / "in")


def test_empty_resonance_frequency_is_ignored_with_a_warning(base, tmp_path, caplog):
    """Issue 26: an empty optional header number was a TypeError in the DICOM writer."""
    _, xml, table = base
    broken = tmp_path / "broken.h5"
    rewrite(broken, re.sub(r"<H1resonanceFrequency_Hz>[^<]*<", "<H1resonanceFrequency_Hz><",
                           xml), table)
    with caplog.at_level(logging.WARNING):
        status = recon([str(broken), "--out", str(tmp_path / "s"), "--method", "zerofill",
                        "--quiet"])
    assert status == 0
    assert [r.getMessage() for r in caplog.records] == [
        f"{broken}: header field experimentalConditions.H1resonanceFrequency_Hz is empty; "
        "ignored"]
    first = pydicom.dcmread(next((tmp_path / "s").iterdir()))
    assert first.ImagingFrequency is None and float(first.MagneticFieldStrength) == 3.0
