"""Training: the TOML config validated into dataclasses (:mod:`.config`), the run folder and
its checkpoints (:mod:`.run`), the run's CSV log (:mod:`.logger`) and the training loop
(:mod:`.loop`); data comes from :mod:`npgd_recon.data`."""
