"""Reconstruction: one :class:`~npgd_recon.recon.base.Reconstructor` interface with a class per
method (network, zero filling, BART CS), chosen by name from one registry, and the pipeline from a
raw study to images."""
