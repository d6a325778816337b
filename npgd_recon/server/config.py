"""What an ``npgd-serve`` client asks for: its config messages as a :class:`SessionConfig`.

A stream may choose its reconstruction three ways (see ``docs/server.md``):

- ``CONFIG_FILE``: a name. A method (``npgd``, ``resnet``, ``cswv``, ``cstv``, ``zerofill``) or
  an alias (``default``: the server's method; ``simplefft``, ``fft``: ``zerofill``); a directory
  part and a ``.xml`` / ``.json`` / ``.toml`` suffix are ignored, case too. Any other name (the
  reference client's default is ``invertcontrast``) falls back to the server's default
  reconstruction with a warning, as python-ismrmrd-server does.
- ``CONFIG_TEXT``: a bare name as above; TOML ``key = value`` lines (quotes optional); a JSON
  object (keys at the top, or under ``"parameters"`` where ``"config"`` / ``"customconfig"`` name
  the method, as python-ismrmrd-server writes it); or Gadgetron XML with
  ``<property name=".." value=".."/>`` (or ``<property><name>..</name><value>..</value>
  </property>``) elements.
- a ``TEXT`` message holding python-ismrmrd-server's JSON (``{"parameters": {"config": ..}}``),
  sent after the header by its ``client.py``: laid over the config chosen so far.

Keys: ``method``, ``weights`` (a shipped model name, or the server's ``--weights``),
``dtype`` (``float32`` | ``uint16`` | ``int16``), ``series_index`` (0-65535), and for
retrospective undersampling of fully sampled data ``undersample`` (R above 1; 0 or ``none``:
off), ``mask`` (``vdrad``, ``poisson``, ``lines``), ``seed`` (an integer from 0); and
``log_text`` (``true`` | ``false``: ``TEXT`` log messages to the client; default true, false
for a Gadgetron XML config); ``cs_lambda`` (a positive CS weight for ``cswv`` / ``cstv``, as
``npgd-recon --cs-lambda``; default: chosen from the data's noise level); ``virtual_coils``
(more coils are compressed to this many, as ``npgd-recon --virtual-coils``; 0: every coil kept;
default 8); ``map_sets`` (1 or 2 sets of ESPIRiT maps per 2-D slice, as ``npgd-recon
--map-sets``; 2 is soft SENSE; default 1).

Every string is cut at its first NUL byte first: MRD clients end (and pad) their strings so.
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import PurePosixPath
from xml.etree import ElementTree

from npgd_recon.core.choices import MAP_SETS, VIRTUAL_COILS
from npgd_recon.core.errors import NpgdError
from npgd_recon.recon.methods import METHODS
from sampling import GENERATORS

ALIASES = {"simplefft": "zerofill", "fft": "zerofill"}
DTYPES = ("float32", "uint16", "int16")
KEYS = ("method", "weights", "dtype", "series_index", "undersample", "mask", "seed",
        "log_text", "cs_lambda", "virtual_coils", "map_sets")
_SUFFIXES = (".xml", ".json", ".toml")
_LINE = re.compile(r"^\s*([A-Za-z_]+)\s*=\s*(.*?)\s*$")
_OFF = ("", "0", "none", "off", "false", "no")
_TRUE, _FALSE = ("1", "on", "true", "yes"), ("0", "off", "false", "no")


class ConfigError(NpgdError):
    """A config message the server cannot follow; the message says why, in one line."""


@dataclass(frozen=True)
class SessionConfig:
    """How one stream is reconstructed and returned.

    Attributes:
        method: one of :data:`npgd_recon.recon.methods.METHODS`.
        weights: the model for ``npgd`` / ``resnet`` (None: the server's choice).
        dtype: pixel type of the returned magnitude images: ``float32``, ``uint16``, ``int16``.
        series_index: ``image_series_index`` of the returned images.
        undersample: retrospective acceleration R of fully sampled data (None: off).
        mask: mask family for ``undersample``.
        seed: mask seed for ``undersample``.
        cs_lambda: the CS regularisation weight (None: from the noise level).
        log_text: send ``TEXT`` log messages (what runs, warnings, processing time) to the
            client; off by default for Gadgetron XML configs (Gadgetron refuses ``TEXT``).
        virtual_coils: more coils are compressed to this many virtual coils (0: no limit;
            :mod:`npgd_recon.recon.coils`).
        map_sets: sets of ESPIRiT maps per 2-D slice (2: soft SENSE).
    """

    method: str = "npgd"
    weights: str | None = None
    dtype: str = "float32"
    series_index: int = 1
    undersample: float | None = None
    cs_lambda: float | None = None
    mask: str = "vdrad"
    seed: int = 0
    log_text: bool = True
    virtual_coils: int = VIRTUAL_COILS
    map_sets: int = MAP_SETS


@dataclass(frozen=True)
class Choice:
    """A config message's outcome: the config, warnings for the client (``TEXT``), and
    whether the message named the method (a later name replaces an earlier one's warning)."""

    config: SessionConfig
    warnings: tuple[str, ...] = field(default=())
    named: bool = False


def clean(text: str) -> str:
    """A wire string up to its first NUL byte (C terminator or padding), trimmed."""
    return text.split("\0", 1)[0].strip()


def method_from_name(name: str, default: SessionConfig) -> str:
    """The method a config name stands for (``default`` is the server's method).

    Raises:
        ConfigError: a name the server does not know.
    """
    stem = PurePosixPath(clean(name).replace("\\", "/")).name.lower()
    for suffix in _SUFFIXES:
        stem = stem.removesuffix(suffix)
    if stem == "default":
        return default.method
    stem = ALIASES.get(stem, stem)
    if stem not in METHODS:
        names = ", ".join((*METHODS, "default", *ALIASES))
        raise ConfigError(f"unknown config {clean(name)!r}; use one of {names}")
    return stem


def choose_by_name(name: str, base: SessionConfig, default: SessionConfig) -> Choice:
    """A config *name* over ``base``: a known name sets the method; any other name falls back
    to the server's default reconstruction (method and weights) with a warning."""
    try:
        return Choice(replace(base, method=method_from_name(name, default)), named=True)
    except ConfigError:
        warning = (f"config {clean(name)!r} is not offered by npgd-serve; using the default "
                   f"reconstruction ({default.method}); configs: "
                   f"{', '.join((*METHODS, 'default', *ALIASES))}")
        return Choice(replace(base, method=default.method, weights=default.weights), (warning,),
                      named=True)


def parse_config_file(name: str, default: SessionConfig) -> Choice:
    """A ``CONFIG_FILE`` message: the name picks the method, the rest stays ``default``."""
    return choose_by_name(name, default, default)


def parse_config_text(text: str, default: SessionConfig) -> Choice:
    """A ``CONFIG_TEXT`` message in any of the accepted forms (see the module docstring)."""
    body = clean(text)
    if not body:
        return Choice(default)
    if body.startswith("{"):
        return _json_choice(_json_object(body), default, default, strict=True)
    if "=" not in body and len(body.split()) == 1 and not body.startswith("<"):
        return choose_by_name(body, default, default)
    if body.startswith("<"):  # Gadgetron: no TEXT messages unless asked for
        values = _xml_values(body)
        base = replace(default, log_text=False)
    else:
        values, base = _toml_values(body), default
    return Choice(apply_values(values, base, default), named="method" in values)


def parse_text_message(text: str, config: SessionConfig,
                       default: SessionConfig) -> Choice | None:
    """A ``TEXT`` message: python-ismrmrd-server's JSON ``{"parameters": {...}}`` (its
    ``config`` / ``customconfig`` name the method; known keys apply, others are left alone)
    laid over ``config``; None when the text is not such a JSON object (it is only logged)."""
    body = clean(text)
    if not body.startswith("{"):
        return None
    try:
        data = json.loads(body)
    except json.JSONDecodeError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("parameters"), dict):
        return None
    return _json_choice(data, config, default, strict=False)


def apply_values(values: dict, base: SessionConfig, default: SessionConfig) -> SessionConfig:
    """Validate ``key -> value`` pairs and lay them over ``base``.

    Raises:
        ConfigError: an unknown key or a value out of range.
    """
    unknown = sorted(set(values) - set(KEYS))
    if unknown:
        raise ConfigError(f"unknown config key {unknown[0]!r}; keys are {', '.join(KEYS)}")
    config = base
    if "method" in values:
        config = replace(config, method=method_from_name(str(values["method"]), default))
    if values.get("weights") not in (None, ""):
        config = replace(config, weights=str(values["weights"]))
    if "dtype" in values:
        config = replace(config, dtype=_choice("dtype", values["dtype"], DTYPES))
    if "series_index" in values:
        config = replace(config, series_index=_integer("series_index", values["series_index"],
                                                       65535))
    if "undersample" in values:
        config = replace(config, undersample=_acceleration(values["undersample"]))
    if "mask" in values:
        config = replace(config, mask=_choice("mask", values["mask"], GENERATORS))
    if "seed" in values:
        config = replace(config, seed=_integer("seed", values["seed"], 2**32 - 1))
    if "log_text" in values:
        config = replace(config, log_text=_boolean("log_text", values["log_text"]))
    if "virtual_coils" in values:
        config = replace(config, virtual_coils=_integer("virtual_coils",
                                                        values["virtual_coils"], 1024))
    if "map_sets" in values:
        sets = values["map_sets"]
        if isinstance(sets, bool | float) or str(sets).strip() not in ("1", "2"):
            raise ConfigError(f"map_sets must be 1 or 2, got {sets!r}")
        config = replace(config, map_sets=int(str(sets)))
    if "cs_lambda" in values:
        try:
            lam = float(values["cs_lambda"])
        except (TypeError, ValueError):
            lam = float("nan")
        if not lam > 0 or lam == float("inf"):
            raise ConfigError(f"cs_lambda must be a positive number, got {values['cs_lambda']!r}")
        config = replace(config, cs_lambda=lam)
    return config


def _boolean(key: str, value) -> bool:
    text = str(value).strip().lower()
    if text not in _TRUE + _FALSE:
        raise ConfigError(f"{key} must be true or false, got {value!r}")
    return text in _TRUE


def _choice(key: str, value, allowed) -> str:
    """``value`` as one of ``allowed`` (case-insensitive), or a one-line ConfigError."""
    name = str(value).lower()
    if name not in allowed:
        raise ConfigError(f"{key} must be {', '.join(allowed)}, got {value!r}")
    return name


def _integer(key: str, value, largest: int) -> int:
    try:
        number = int(str(value))
    except ValueError:
        number = -1
    if not 0 <= number <= largest or isinstance(value, bool | float):
        raise ConfigError(f"{key} must be an integer 0-{largest}, got {value!r}")
    return number


def _acceleration(value) -> float | None:
    if value is None or value is False or str(value).strip().lower() in _OFF:
        return None
    try:
        accel = float(str(value))
    except ValueError:
        accel = 0.0
    if not 1 < accel < float("inf") or isinstance(value, bool):
        raise ConfigError(f"undersample must be a number above 1 (or 0: off), got {value!r}")
    return accel


def _json_object(body: str) -> dict:
    try:
        data = json.loads(body)
    except json.JSONDecodeError as error:
        raise ConfigError(f"config text is not valid JSON ({error})") from None
    if not isinstance(data, dict):
        raise ConfigError("JSON config text must be an object")
    return data


def _json_choice(data: dict, base: SessionConfig, default: SessionConfig, *,
                 strict: bool) -> Choice:
    """A JSON config: keys at the top (``strict``: unknown keys refused), or
    python-ismrmrd-server's ``parameters`` (``config`` / ``customconfig`` name the method,
    keys the server does not know are left alone)."""
    parameters = data.get("parameters")
    if not isinstance(parameters, dict):
        if not strict:
            return Choice(base)
        return Choice(apply_values(data, base, default), named="method" in data)
    values = {key: parameters[key] for key in KEYS if key in parameters}
    name = parameters.get("customconfig") or parameters.get("config")
    choice = Choice(base)
    if "method" not in values and isinstance(name, str) and clean(name):
        choice = choose_by_name(name, base, default)
    return Choice(apply_values(values, choice.config, default), choice.warnings,
                  choice.named or "method" in values)


def _xml_values(body: str) -> dict:
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError as error:
        raise ConfigError(f"config text is not valid XML ({error})") from None
    values = {}
    for element in root.iter():
        if element.tag.rsplit("}", 1)[-1] != "property":
            continue
        name = element.get("name") or element.findtext("{*}name") or ""
        value = element.get("value") if "value" in element.attrib else element.findtext(
            "{*}value")
        if name.strip() in KEYS and value is not None:
            values[name.strip()] = value.strip()
    return values


def _toml_values(body: str) -> dict:
    try:
        return tomllib.loads(body)
    except tomllib.TOMLDecodeError as error:
        toml_error = error
    values = {}
    for line in body.splitlines():
        line = line.split("#", 1)[0]
        if not line.strip():
            continue
        match = _LINE.match(line)
        if match is None:
            raise ConfigError(f"config text is neither a name, TOML, JSON nor XML ({toml_error})")
        values[match[1]] = match[2].strip("'\"")
    return values
