"""Training: data sources and the undersampling transform, the TOML config, the training loop."""
