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

__version__ = "0.1.0"
