"""The physics and numerics every other layer shares: centred FFTs, forward operators with their
adjoints, metrics, the network's normalisation, the torch device and the project's errors."""
