"""Training: the TOML config validated into dataclasses and the training loop (data comes from
:mod:`npgd_recon.data`)."""
