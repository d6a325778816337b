"""npgd-recon: neural proximal gradient descent for compressive MRI (Mardani et al., 2018)."""

__version__ = "0.1.0"
