"""The names and defaults a user chooses among: devices, precisions, the network batch and the
de-biasing iterations.

Kept free of heavy imports (torch, sigpy) so that command-line parsers, and with them ``--help``,
start in a fraction of a second.
"""

from __future__ import annotations

__all__ = ["CPU_CALL_BYTES", "DEFAULT_BATCH", "DEFAULT_DEBIAS_ITERATIONS", "DEVICES",
           "MAP_SETS", "MAX_COIL_PLANES", "PRECISIONS", "VIRTUAL_COILS"]

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DEFAULT_BATCH = 8  # 2-D problems per network call
MAX_COIL_PLANES = 128  # and at most this many coil images per call: 4 planes of 32 coils
# How much of the coil maps' model error a network is told as noise (npgd_recon.core.map_error)
MAP_ERROR_WEIGHT = 0.1
# On the CPU a network call's largest tensor (a proximal activation or the coil images) stays
# within this: larger temporaries run 1.5-2x slower per plane (page faults, cache misses;
# benchmarks/RESULTS.md, issue 28), so large planes go 1 or 2 per call whatever --batch allows.
CPU_CALL_BYTES = 4 * 2**20
VIRTUAL_COILS = 8  # more coils are compressed to this many virtual coils (npgd_recon.recon.coils)
MAP_SETS = 1  # sets of ESPIRiT maps per 2-D plane; 2 is soft SENSE (MODEL_CARD.md, "Soft SENSE")
DEFAULT_DEBIAS_ITERATIONS = 5  # paper Remark 1; docs/analysis.md for why 5
