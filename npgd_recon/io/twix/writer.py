"""Store an ISMRMRD header and acquisitions as an ISMRMRD HDF5 file (``npgd-convert``).

The layout is ISMRMRD's own: ``/<group>/xml`` (one variable-length string, the XML header) and
``/<group>/data`` (the compound acquisition table: ``head``, ``traj``, ``data``), the table
stored with HDF5's Fletcher-32 checksum like the simulator's files, so ``ismrmrd_info``,
``ismrmrd_recon_cartesian_2d`` and :func:`~npgd_recon.io.ismrmrd_file.read_raw` read it. Samples
are copied in chunks; the caller makes the path atomic (:class:`~npgd_recon.io.atomic.Outputs`).
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
from ismrmrd import xsd
from ismrmrd.hdf5 import acquisition_dtype

from npgd_recon.io.assembly import AcquisitionTable

__all__ = ["write_ismrmrd"]

_CHUNK = 1024


def write_ismrmrd(path: str | Path, header, table: AcquisitionTable,
                  group: str = "dataset") -> int:
    """Write ``header`` (``ismrmrd.xsd.ismrmrdHeader``) and every acquisition of ``table`` to
    the HDF5 file ``path``; the number of acquisitions written."""
    count = len(table.heads)
    empty = np.zeros(0, dtype=np.float32)
    with h5py.File(path, "w") as file:
        dataset = file.create_group(group)
        xml = dataset.create_dataset("xml", (1,), dtype=h5py.special_dtype(vlen=bytes))
        xml[0] = xsd.ToXML(header).encode()
        data = dataset.create_dataset("data", (count,), dtype=acquisition_dtype,
                                      maxshape=(None,), chunks=True, fletcher32=True)
        for start in range(0, count, _CHUNK):
            stop = min(start + _CHUNK, count)
            block = np.zeros(stop - start, dtype=acquisition_dtype)
            block["head"] = table.heads[start:stop]
            for row, samples in enumerate(table.rows(start, stop)):
                block["data"][row] = np.asarray(samples, dtype=np.float32)
                block["traj"][row] = empty
            data[start:stop] = block
    return count
