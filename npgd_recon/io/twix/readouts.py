"""Twix readouts (twixtools ``Mdb`` objects) as ISMRMRD acquisitions: headers and samples.

Each readout becomes one ``ismrmrd.hdf5.acquisition_header_dtype`` record, the binary ISMRMRD
AcquisitionHeader, with:

- flags: noise adjustment scan -> ``ACQ_IS_NOISE_MEASUREMENT``; phase correction ->
  ``PHASECORR_DATA``; reflected (EPI) -> ``IS_REVERSE``; RT/HP feedback, phase stabilisation
  (and its reference) and retro dummy scans -> their ISMRMRD flags; PAT reference ->
  ``PARALLEL_CALIBRATION`` (``_AND_IMAGING`` when it is also an imaging line); first/last in
  slice and last in measurement carried over;
- counters ``Lin Par Ave Sli Eco Phs Rep Set Seg`` -> ``kspace_encode_step_1/2``, ``average``,
  ``slice``, ``contrast``, ``phase``, ``repetition``, ``set``, ``segment``; ``Ida..Ide`` ->
  ``idx.user[0..4]``;
- ``CenterCol`` -> ``center_sample``, ``CutOff`` -> ``discard_pre/post``;
- geometry: ``position`` = the slice position (Sag, Cor, Tra: already LPS, mm); the quaternion
  (stored W, X, Y, Z) is a rotation whose columns are the phase, read and slice directions
  (siemens_to_ismrmrd's convention); table position from um to mm;
- ``sample_time_us``: the protocol's dwell time for imaging readouts; noise readouts get
  siemens_to_ismrmrd's empirical noise dwell (5 us in an AdjCoilSens measurement, 4 us in
  AdjQuietCoilSens, else ``floor(76800 / samples) / 10`` us on VD/VE and
  ``1e6 / (130 samples)`` us on VB). Only the ratio of noise to imaging dwell is used (it scales
  the noise covariance).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import ismrmrd
import numpy as np
from ismrmrd.hdf5 import acquisition_header_dtype

from npgd_recon.io.assembly import RawDataError
from npgd_recon.io.twix.protocol import ReadoutSummary

__all__ = ["NOT_IMAGING", "TwixAcquisitions", "acquisition_heads", "noise_dwell_us",
           "summarise"]

FLAGS = (("NOISEADJSCAN", ismrmrd.ACQ_IS_NOISE_MEASUREMENT),
         ("PHASCOR", ismrmrd.ACQ_IS_PHASECORR_DATA),
         ("REFLECT", ismrmrd.ACQ_IS_REVERSE),
         ("RTFEEDBACK", ismrmrd.ACQ_IS_RTFEEDBACK_DATA),
         ("HPFEEDBACK", ismrmrd.ACQ_IS_HPFEEDBACK_DATA),
         ("PHASESTABSCAN", ismrmrd.ACQ_IS_PHASE_STABILIZATION),
         ("REFPHASESTABSCAN", ismrmrd.ACQ_IS_PHASE_STABILIZATION_REFERENCE),
         ("RETRO_DUMMYSCAN", ismrmrd.ACQ_IS_DUMMYSCAN_DATA),
         ("FIRSTSCANINSLICE", ismrmrd.ACQ_FIRST_IN_SLICE),
         ("LASTSCANINSLICE", ismrmrd.ACQ_LAST_IN_SLICE),
         ("LASTSCANINMEAS", ismrmrd.ACQ_LAST_IN_MEASUREMENT))
#: Siemens flags of readouts that are never image data.
NOT_IMAGING = ("NOISEADJSCAN", "PHASCOR", "RTFEEDBACK", "HPFEEDBACK", "PHASESTABSCAN",
               "REFPHASESTABSCAN", "RETRO_DUMMYSCAN")
COUNTERS = (("kspace_encode_step_1", "Lin"), ("kspace_encode_step_2", "Par"),
            ("average", "Ave"), ("slice", "Sli"), ("contrast", "Eco"), ("phase", "Phs"),
            ("repetition", "Rep"), ("set", "Set"), ("segment", "Seg"))
USER_COUNTERS = ("Ida", "Idb", "Idc", "Idd", "Ide")


def _bit(flag: int) -> np.uint64:
    return np.uint64(1 << (flag - 1))


def noise_dwell_us(samples: int, protocol_name: str, multi_raid: bool) -> float:
    """The dwell time (us) siemens_to_ismrmrd gives noise readouts of ``samples`` samples."""
    if protocol_name.startswith("AdjQuietCoilSens"):
        return 4.0
    if protocol_name.startswith("AdjCoilSens"):
        return 5.0
    if not multi_raid:
        return 1e6 / samples / 130.0
    return int(76800.0 / samples) / 10.0


def _directions(quaternion: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(read, phase, slice)`` from a Siemens quaternion ``(w, x, y, z)``."""
    w, x, y, z = (float(q) for q in quaternion)
    rotation = np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])
    return rotation[:, 1], rotation[:, 0], rotation[:, 2]


def _flags(mdb) -> np.uint64:
    flags = np.uint64(0)
    for name, flag in FLAGS:
        if mdb.is_flag_set(name):
            flags |= _bit(flag)
    if mdb.is_flag_set("PATREFANDIMASCAN"):
        flags |= _bit(ismrmrd.ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING)
    elif mdb.is_flag_set("PATREFSCAN"):
        flags |= _bit(ismrmrd.ACQ_IS_PARALLEL_CALIBRATION)
    return flags


def acquisition_heads(mdbs: Sequence, sample_time_us: Sequence[float]) -> np.ndarray:
    """One ISMRMRD acquisition header record per readout (module docstring: the mapping)."""
    heads = np.zeros(len(mdbs), dtype=acquisition_header_dtype)
    heads["version"] = 1
    heads["sample_time_us"] = sample_time_us
    for i, mdb in enumerate(mdbs):
        mdh, head = mdb.mdh, heads[i:i + 1]
        channels = int(mdh.UsedChannels)
        head["flags"] = _flags(mdb)
        head["measurement_uid"] = mdh.MeasUID
        head["scan_counter"] = mdh.ScanCounter
        head["acquisition_time_stamp"] = mdh.TimeStamp
        head["physiology_time_stamp"][0, 0] = mdh.PMUTimeStamp
        head["number_of_samples"] = mdh.SamplesInScan
        head["available_channels"] = head["active_channels"] = channels
        for c in range(min(channels, 1024)):
            head["channel_mask"][0, c // 64] |= np.uint64(1 << (c % 64))
        head["discard_pre"], head["discard_post"] = mdh.CutOff.Pre, mdh.CutOff.Post
        head["center_sample"] = mdh.CenterCol
        position = mdh.SliceData.SlicePos
        head["position"] = (position.Sag, position.Cor, position.Tra)
        head["read_dir"], head["phase_dir"], head["slice_dir"] = \
            _directions(mdh.SliceData.Quaternion)
        head["patient_table_position"] = [getattr(mdh, f"PTABPos{a}", 0) / 1000.0
                                          for a in "XYZ"]
        counter = mdh.Counter
        for name, siemens in COUNTERS:
            head["idx"][name] = getattr(counter, siemens)
        head["idx"]["user"][0, :5] = [getattr(counter, name) for name in USER_COUNTERS]
    return heads


def summarise(imaging: Sequence, heads: np.ndarray) -> ReadoutSummary:
    """What the imaging readouts (``Mdb`` objects and their header records) say about the
    encoding."""
    idx = heads["idx"]
    first = imaging[0].mdh
    return ReadoutSummary(
        channels=int(first.UsedChannels),
        maxima={name: int(idx[name].max()) for name, _ in COUNTERS},
        minima={name: int(idx[name].min())
                for name in ("kspace_encode_step_1", "kspace_encode_step_2")},
        centre_line=int(first.CenterLin), centre_partition=int(first.CenterPar),
        centre_column=int(first.CenterCol), measurement_uid=int(first.MeasUID))


@dataclass
class TwixAcquisitions:
    """An :class:`~npgd_recon.io.assembly.AcquisitionTable` over twix readouts: headers in
    memory, samples read from the file when asked for.

    Attributes:
        heads: ``acquisition_header_dtype`` records, one per readout.
        mdbs: the twixtools ``Mdb`` objects, in the same order.
        source: the file, for messages.
    """

    heads: np.ndarray
    mdbs: list
    source: str

    def rows(self, start: int, stop: int) -> list[np.ndarray]:
        """The samples of readouts ``start .. stop - 1``, each flat float32 ``[channel,
        sample]`` with real and imaginary parts interleaved."""
        rows = []
        for i in range(start, stop):
            try:
                data = np.asarray(self.mdbs[i].data, dtype=np.complex64)
            except (ValueError, OSError) as error:
                raise RawDataError(f"{self.source}: readout {i} cannot be read ({error}); "
                                   "truncated or corrupt twix file") from error
            rows.append(np.ascontiguousarray(data).view(np.float32).ravel())
        return rows
