"""Compressed-sensing baselines through the real BART binary, and BART's cfl file format."""

from bart_baselines.cfl import readcfl, writecfl
from bart_baselines.cs import cs_tv, cs_wavelet, espirit_maps
from bart_baselines.espirit import VolumeMaps, calibrate_volume, espirit_maps_volume
from bart_baselines.runner import (
    BartError,
    BartInputError,
    BartNotFoundError,
    default_threads,
    find_bart,
    run_bart,
    set_default_threads,
)
from bart_baselines.tuning import tune_lambda

__all__ = [
    "readcfl",
    "writecfl",
    "cs_wavelet",
    "cs_tv",
    "espirit_maps",
    "espirit_maps_volume",
    "calibrate_volume",
    "VolumeMaps",
    "tune_lambda",
    "BartError",
    "BartInputError",
    "BartNotFoundError",
    "find_bart",
    "run_bart",
    "default_threads",
    "set_default_threads",
]
