"""The network and what turns it into a reconstruction engine: the NPGD module (pure
``nn.Module``), its linearisation, inference preparation (folded batch norm, precision),
safetensors checkpoints and the registry of shipped weights (``weights/``)."""
