"""Simulated acquisitions: phantoms, synthetic coil sensitivities, smooth phase and the writer of
scanner-like ISMRMRD raw data."""
