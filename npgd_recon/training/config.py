"""Training configuration: a TOML file validated once, at load, into frozen dataclasses.

A config has up to three tables, ``[model]`` (:class:`ModelConfig`, the network's
architecture: the keyword arguments of :class:`~npgd_recon.models.npgd.NeuralPGD`), ``[data]``
(:class:`DataConfig`: problems, sources, augmentation) and ``[train]`` (:class:`TrainConfig`:
optimisation, checkpoints, processes). Every key is optional; its default is the dataclass
field's, written here and only here (``docs/training.md`` lists each key's type, default and
meaning, and a test holds it to these classes).

Validation happens in the dataclasses (``__post_init__``), so a :class:`Config` read by
:func:`load_config`, built in code or changed with :func:`dataclasses.replace` is checked the
same way: unknown tables and keys are refused, each value must have its field's type (a whole
number where an ``int`` is expected; any number, converted, where a ``float`` is; a TOML array
where a tuple is) and lie in its range. Every problem is one :class:`ConfigError` whose message
names the key (``config train.workers must be a whole number >= 0, got -1``).

:meth:`Config.as_dict` is the plain form (tables of lists, as the TOML reads) stored in each
checkpoint's metadata, as before the dataclasses.
"""

from __future__ import annotations

import json
import tomllib
import types
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from npgd_recon.core.errors import NpgdError
from npgd_recon.data.undersampled import MAPS, Augment, coil_range
from npgd_recon.models.npgd import DATA_CONSISTENCY, PROXIMALS
from npgd_recon.sim.coils import COIL_GEOMETRIES
from sampling import GENERATORS

__all__ = ["OPERATORS", "Config", "ConfigError", "DataConfig", "ModelConfig", "TrainConfig",
           "load_config"]

OPERATORS = ("cartesian", "block-average")  # data.operator: MRI k-space, 2x2 super resolution
KINDS = {bool: "true or false", int: "a whole number", float: "a number", str: "a string",
         dict: "a table"}


class ConfigError(NpgdError):
    """A training config that cannot be used; the message names the key."""


def _typed(kind, value):
    """``value`` as the type ``kind`` (ints to float, arrays to tuples), or ``None`` if it does
    not fit."""
    if isinstance(kind, types.UnionType):
        return next((v for k in typing.get_args(kind) if (v := _typed(k, value)) is not None),
                    None)
    if typing.get_origin(kind) is tuple:
        args = typing.get_args(kind)
        if not isinstance(value, (list, tuple)):
            return None
        kinds = [args[0]] * len(value) if args[-1] is Ellipsis else list(args)
        items = [_typed(k, v) for k, v in zip(kinds, value)]
        return tuple(items) if len(kinds) == len(value) and None not in items else None
    if isinstance(value, bool) != (kind is bool):
        return None
    if kind is float and isinstance(value, int):
        return float(value)
    return value if isinstance(value, kind) else None


def _describe(kind) -> str:
    if isinstance(kind, types.UnionType):
        return " or ".join(_describe(k) for k in typing.get_args(kind))
    if typing.get_origin(kind) is tuple:
        args = typing.get_args(kind)
        if args[-1] is Ellipsis:
            return f"a list of {_describe(args[0]).removeprefix('a ')}s"
        return "[" + ", ".join(_describe(k).removeprefix("a ") for k in args) + "]"
    return KINDS[kind]


class _Section:
    """A config table: its fields typed and converted on construction, then :meth:`_check`."""

    SECTION = ""

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in fields(self):  # frozen: the converted value is set through object
            value = getattr(self, f.name)
            typed = _typed(hints[f.name], value)
            if typed is None:
                raise ConfigError(f"config {self.SECTION}.{f.name} must be "
                                  f"{_describe(hints[f.name])}, got {_toml(value)}")
            object.__setattr__(self, f.name, typed)
        self._check()

    def _check(self) -> None:
        """Ranges and rules between keys (types are checked already)."""

    def _require(self, ok: bool, key: str, rule: str) -> None:
        if not ok:
            raise ConfigError(f"config {self.SECTION}.{key} must be {rule}, got "
                              f"{_toml(getattr(self, key))}")

    @classmethod
    def from_table(cls, table: dict) -> typing.Self:
        """The section from its TOML table; unknown keys are refused."""
        if not isinstance(table, dict):
            raise ConfigError(f"config {cls.SECTION} must be a table, got {_toml(table)}")
        known = [f.name for f in fields(cls)]
        for key in table:
            if key not in known:
                raise ConfigError(f"unknown config key '{cls.SECTION}.{key}'; known: "
                                  f"{', '.join(known)}")
        return cls(**table)


def _toml(value) -> str:
    """A value as it would be written in the TOML file."""
    return json.dumps(value, default=str)


@dataclass(frozen=True)
class ModelConfig(_Section):
    """``[model]``: the network (:class:`~npgd_recon.models.npgd.NeuralPGD`'s arguments)."""

    SECTION = "model"
    iterations: int = 10
    blocks: int = 1
    features: int = 128
    data_consistency: str = "gradient"
    global_skip: bool = True
    proximal: str = "resnet"
    layers: int = 5
    kernel: int = 8
    alpha_init: float = 1.0
    cg_iterations: int = 8  # conjugate-gradient steps per implicit step ("cg", final_dc)
    final_dc: bool = False  # end with an implicit data-consistency step on x_T
    final_noise: bool = False  # that step's alpha follows the measurement's noise level
    sigma_init: float = 0.01  # its initial sigma_0 (normalised noise std per k-space sample)
    unshuffle: int = 1  # the resnet proximal on r x r pixel blocks (r > 1), at 1/r resolution
    noise_input: bool = False  # the resnet proximal also sees the noise level (a third channel)
    untied: bool = False  # one resnet proximal per iteration (not the paper's shared one)

    def _check(self) -> None:
        for key, low in (("iterations", 1), ("blocks", 0), ("features", 1), ("layers", 1),
                         ("kernel", 1), ("cg_iterations", 1), ("unshuffle", 1)):
            self._require(getattr(self, key) >= low, key, f">= {low}")
        self._require(self.data_consistency in DATA_CONSISTENCY, "data_consistency",
                      f"one of {', '.join(DATA_CONSISTENCY)}")
        self._require(self.proximal in PROXIMALS, "proximal", f"one of {', '.join(PROXIMALS)}")
        self._require(self.proximal != "unet" or self.blocks >= 1, "blocks",
                      ">= 1 with the unet proximal (its levels below the full resolution)")
        self._require(self.unshuffle == 1 or self.proximal == "resnet", "unshuffle",
                      "1 unless the proximal is resnet")
        self._require(not self.noise_input or self.proximal == "resnet", "noise_input",
                      "false unless the proximal is resnet")
        self._require(not self.untied or self.proximal == "resnet", "untied",
                      "false unless the proximal is resnet")
        self._require(self.alpha_init > 0, "alpha_init", "> 0")
        self._require(self.sigma_init > 0, "sigma_init", "> 0")
        self._require(self.final_dc or not self.final_noise, "final_noise",
                      "false without final_dc (it sets the final step's alpha)")


@dataclass(frozen=True)
class DataConfig(_Section):
    """``[data]``: the problems trained on and validated on."""

    SECTION = "data"
    operator: str = "cartesian"
    coils: int | tuple[int, int] = 1  # a count, or [low, high]: a random count per batch
    train: tuple[dict, ...] = ({"kind": "phantom", "count": 1000},)
    validation: tuple[dict, ...] = ({"kind": "phantom", "count": 16, "seed": 12345},)
    validation_slices: int = 16
    shape: tuple[int, int] = (128, 128)
    shapes: tuple[tuple[int, int], ...] = ()  # more crop sizes, one per batch, zoom scaled
    zoom: tuple[float, float] = (0.55, 1.0)
    mask: str = "vdrad"
    accel: float = 5.0
    noise: tuple[float, float] = (0.0, 0.02)
    noise_scale: str = "linear"  # or "log": noise levels log-uniform in data.noise
    maps: str = "exact"  # or "espirit": multi-coil maps estimated as at inference (UndersampledSet)
    maps_up_to: int = 0  # > 0: "espirit" only for items whose larger side is at most this
    map_sets: int = 1  # 2: soft SENSE, two sets of ESPIRiT maps (maps = "espirit")
    map_error: float = 0.0  # > 0: the noise level told counts the maps' error (maps = "espirit")
    coil_geometry: str = "birdcage"  # training's simulated array: or "loops", "mixed" (per item)
    validation_coil_geometry: str = "birdcage"  # the validation problems' array
    texture: tuple[float, float] = (0.0, 0.0)  # training images' own noise (UndersampledSet)
    validation_noise: float = 0.01
    validation_phase: bool = False  # real validation images get a fixed smooth phase
    validation_coils: tuple[int, ...] = ()  # every validation problem at each of these counts
    gamma: tuple[float, float] = (1.0, 1.0)  # contrast augmentation (data.undersampled.Augment),
    invert: float = 0.0  # off by default: random gamma range, inversion probability,
    bias: float = 0.0  # smooth bias-field strength

    def _check(self) -> None:
        self._require(self.operator in OPERATORS, "operator", f"one of {', '.join(OPERATORS)}")
        even = 2 if self.operator == "block-average" else 1  # 2x2 blocks
        self._require(all(n >= even and n % even == 0 for n in self.shape), "shape",
                      "two even sizes" if even == 2 else "two sizes >= 1")
        self._require(all(n >= even and n % even == 0 for s in self.shapes for n in s)
                      and (not self.shapes or self.operator != "block-average"), "shapes",
                      "a list of [y, x] sizes >= 1 (not with the block-average operator)")
        try:  # the data package's own rules for coils and the augmentation
            coil_range(self.coils)
            self.augment()
        except NpgdError as error:
            raise ConfigError(f"config data.{error}") from None
        for key in ("train", "validation"):
            sources = getattr(self, key)
            self._require(bool(sources) and all(isinstance(s.get("kind"), str) for s in sources),
                          key, "a non-empty list of tables with a kind")
        self._require(self.validation_slices >= 1, "validation_slices", ">= 1")
        self._require(self.mask in GENERATORS, "mask", f"one of {', '.join(GENERATORS)}")
        self._require(self.accel >= 1, "accel", ">= 1")
        self._require(0 <= self.noise[0] <= self.noise[1], "noise", "[low, high], 0 <= low <= high")
        self._require(self.noise_scale in ("linear", "log"), "noise_scale", "'linear' or 'log'")
        self._require(self.noise_scale == "linear" or self.noise[0] > 0, "noise_scale",
                      "'linear' when data.noise starts at 0 (a log scale needs low > 0)")
        self._require(self.maps in MAPS, "maps", f"one of {', '.join(MAPS)}")
        self._require(self.maps_up_to >= 0, "maps_up_to", ">= 0 (0: every size)")
        self._require(self.map_sets == 1 or self.map_sets == 2 and self.maps == "espirit"
                      and self.coil_range[1] > 1, "map_sets",
                      '1, or 2 with maps = "espirit" and multi-coil problems')
        self._require(self.map_error == 0 or self.map_error > 0 and self.maps == "espirit",
                      "map_error", '0, or > 0 with maps = "espirit"')
        for key in ("coil_geometry", "validation_coil_geometry"):
            self._require(getattr(self, key) in (*COIL_GEOMETRIES, "mixed"), key,
                          f"one of {', '.join(COIL_GEOMETRIES)}, mixed")
        self._require(0 <= self.texture[0] <= self.texture[1], "texture",
                      "[low, high], 0 <= low <= high (fractions of the object's mean)")
        self._require(self.texture == (0.0, 0.0) or self.operator != "block-average",
                      "texture", "[0, 0] with the block-average operator (MRI problems only)")
        self._require(self.validation_noise >= 0, "validation_noise", ">= 0")
        self._require(all(c >= 1 for c in self.validation_coils), "validation_coils",
                      "a list of coil counts >= 1 (empty: drawn from data.coils)")

    @property
    def coil_range(self) -> tuple[int, int]:
        """``coils`` as a range ``(low, high)``."""
        return coil_range(self.coils)

    def augment(self) -> tuple[Augment, ...]:
        """The training augmentations these keys describe (MRI problems): one per crop size,
        ``shape`` first, then ``shapes`` (:meth:`~npgd_recon.data.undersampled.Augment.at`)."""
        first = Augment(self.shape, self.zoom, gamma=self.gamma, invert=self.invert,
                        bias=self.bias)
        return (first, *(first.at(s) for s in self.shapes))


@dataclass(frozen=True)
class TrainConfig(_Section):
    """``[train]``: optimisation, checkpoints, validation and processes."""

    SECTION = "train"
    steps: int = 10000
    batch_size: int = 4
    lr: float = 1e-4
    alpha_lr: float = 0.0  # learning rate of the step sizes (alpha, final alpha, sigma_0); 0: lr
    lr_halve_every: int = 10000
    beta: float = 0.75
    seed: int = 0
    checkpoint_every: int = 200
    validate_every: int = 200
    amp: bool = True
    freeze_norm: bool = False  # batch norm normalises with its running statistics, as inference
    keep_best: bool = False  # also keep the model of the best validation SNR (best.safetensors)
    ema: float = 0.0  # decay of the weights' moving average that is validated and written; 0: off
    threads: int = 0
    workers: int = 0  # DataLoader worker processes (0: batches made in the training process)
    init: str = ""
    max_seconds: float = 0.0  # stop (validated, checkpointed) after this much training; 0: none

    def _check(self) -> None:
        for key in ("steps", "batch_size", "lr_halve_every", "checkpoint_every",
                    "validate_every"):
            self._require(getattr(self, key) >= 1, key, "a whole number >= 1")
        for key in ("threads", "workers"):
            self._require(getattr(self, key) >= 0, key, "a whole number >= 0")
        self._require(self.lr > 0, "lr", "> 0")
        self._require(self.alpha_lr >= 0, "alpha_lr", ">= 0 (0: train.lr)")
        self._require(0 <= self.beta <= 1, "beta", "in [0, 1]")
        self._require(self.max_seconds >= 0, "max_seconds", ">= 0 (0: no limit)")
        self._require(0 <= self.ema < 1, "ema", "in [0, 1) (0: off)")


@dataclass(frozen=True)
class Config:
    """A whole training config: ``[model]``, ``[data]`` and ``[train]``."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    @classmethod
    def from_tables(cls, tables: dict) -> Config:
        """A config from parsed TOML tables (missing tables and keys take their defaults)."""
        sections = typing.get_type_hints(cls)
        for name in tables:
            if name not in sections:
                raise ConfigError(f"unknown config table [{name}]; known: "
                                  f"{', '.join(sections)}")
        return cls(**{name: sections[name].from_table(table) for name, table in tables.items()})

    def as_dict(self) -> dict:
        """The plain form (tables, lists), as stored in checkpoints and read by old code."""
        return json.loads(json.dumps(asdict(self)))


def load_config(path: str | Path | None) -> Config:
    """Read and validate a TOML config (``None``: every default)."""
    if path is None:
        return Config()
    try:
        tables = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: invalid TOML ({error})") from None
    try:
        return Config.from_tables(tables)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None
