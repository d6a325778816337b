"""npgd-recon: neural proximal gradient descent for compressive MRI (Mardani et al., 2018).

The sub-packages follow the data flow, and imports point one way only (left may not import right):

``core`` (FFT, operators, metrics, normalisation, device, errors) <- ``models`` (the network,
inference preparation, checkpoints, shipped weights) <- ``io`` (ISMRMRD in, DICOM / ISMRMRD /
PNG out, atomic outputs) <- ``sim`` (phantoms, synthetic coils, simulated scans) <- ``recon``
(reconstructors, the raw-study pipeline) <- ``training`` <- ``analysis`` <- ``server`` <- ``cli``.
Every layer may use the leaves ``sampling`` and
``bart_baselines``, which never import ``npgd_recon`` nor each other. ``tests/test_layering.py``
enforces it.
"""

import os

# Large tensors (a batch of coil images or feature maps is tens of MB) on transparent huge pages:
# torch's CPU allocator asks for them with this variable, which it reads once, before its first
# allocation, hence here, before anything imports torch. Without it every fresh 2-D batch
# page-faults 4 KiB at a time: the 3-D 8-coil network ran 2.6x slower, half of it in the kernel
# (benchmarks/RESULTS.md, issue 28). THP_MEM_ALLOC_ENABLE=0 in the environment turns it off.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

# Blocks of a few MiB from the heap instead of fresh mmaps per call (npgd_recon.core.allocator).
from npgd_recon.core.allocator import tune_malloc  # noqa: E402

MALLOC_TUNED = tune_malloc()

__version__ = "0.1.0"
