"""Siemens twix (.dat) raw data as ISMRMRD, read with twixtools.

:func:`read_twix_scan` turns a twix file into the project's in-memory ISMRMRD form: an XML
header built from the protocol (:mod:`~npgd_recon.io.twix.protocol`) and one ISMRMRD
acquisition header per readout with its samples (:mod:`~npgd_recon.io.twix.readouts`), which
:func:`~npgd_recon.io.assembly.assemble_study` assembles like any ISMRMRD file
(:func:`read_twix_study`; ``read_raw`` routes twix files here by content,
:func:`~npgd_recon.io.twix.detect.is_twix`). :func:`write_ismrmrd` stores the same header and
acquisitions as an ISMRMRD HDF5 file (``npgd-convert``). twixtools is imported only when a twix
file is read. See ``docs/io.md`` for the mapping and its limits.
"""

from npgd_recon.io.twix.detect import is_twix
from npgd_recon.io.twix.reader import TwixScan, read_twix_scan, read_twix_study
from npgd_recon.io.twix.writer import write_ismrmrd

__all__ = ["TwixScan", "is_twix", "read_twix_scan", "read_twix_study", "write_ismrmrd"]
