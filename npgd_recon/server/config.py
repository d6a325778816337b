"""What an ``npgd-serve`` client asks for: its config message as a :class:`SessionConfig`.

A stream opens with either message (see ``docs/server.md``):

- ``CONFIG_FILE``: a name. A method (``npgd``, ``resnet``, ``cswv``, ``cstv``, ``zerofill``) or
  an alias (``default``: the server's method; ``simplefft``, ``fft``: ``zerofill``); a directory
  part and a ``.xml`` / ``.json`` / ``.toml`` suffix are ignored, case too.
- ``CONFIG_TEXT``: a bare name as above; TOML ``key = value`` lines (quotes optional); a JSON
  object (keys at the top or under ``"parameters"``, where ``"config"`` means ``method``, as
  python-ismrmrd-server sends it); or Gadgetron XML with ``<property name=".." value=".."/>``
  (or ``<property><name>..</name><value>..</value></property>``) elements.

Keys: ``method``, ``weights`` (a shipped model name, or the server's ``--weights``),
``dtype`` (``float32`` | ``uint16``), ``series_index`` (0-65535).
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass, replace
from pathlib import PurePosixPath
from xml.etree import ElementTree

from npgd_recon.recon.methods import METHODS

ALIASES = {"simplefft": "zerofill", "fft": "zerofill"}
DTYPES = ("float32", "uint16")
KEYS = ("method", "weights", "dtype", "series_index")
_SUFFIXES = (".xml", ".json", ".toml")
_LINE = re.compile(r"^\s*([A-Za-z_]+)\s*=\s*(.*?)\s*$")


class ConfigError(ValueError):
    """A config message the server cannot follow; the message says why, in one line."""


@dataclass(frozen=True)
class SessionConfig:
    """How one stream is reconstructed and returned.

    Attributes:
        method: one of :data:`npgd_recon.recon.base.METHODS`.
        weights: the model for ``npgd`` / ``resnet`` (None: the server's choice).
        dtype: pixel type of the returned magnitude images, ``float32`` or ``uint16``.
        series_index: ``image_series_index`` of the returned images.
    """

    method: str = "npgd"
    weights: str | None = None
    dtype: str = "float32"
    series_index: int = 1


def method_from_name(name: str, default: SessionConfig) -> str:
    """The method a config name stands for (``default`` is the server's method)."""
    stem = PurePosixPath(name.strip().replace("\\", "/")).name.lower()
    for suffix in _SUFFIXES:
        stem = stem.removesuffix(suffix)
    if stem == "default":
        return default.method
    stem = ALIASES.get(stem, stem)
    if stem not in METHODS:
        names = ", ".join((*METHODS, "default", *ALIASES))
        raise ConfigError(f"unknown config {name.strip()!r}; use one of {names}")
    return stem


def parse_config_file(name: str, default: SessionConfig) -> SessionConfig:
    """A ``CONFIG_FILE`` message: the name picks the method, the rest stays ``default``."""
    return replace(default, method=method_from_name(name, default))


def parse_config_text(text: str, default: SessionConfig) -> SessionConfig:
    """A ``CONFIG_TEXT`` message in any of the accepted forms (see the module docstring)."""
    body = text.strip()
    if not body:
        return default
    if body.startswith("{"):
        values = _json_values(body)
    elif body.startswith("<"):
        values = _xml_values(body)
    elif "=" not in body and len(body.split()) == 1:
        values = {"method": body}
    else:
        values = _toml_values(body)
    return apply_values(values, default)


def apply_values(values: dict, default: SessionConfig) -> SessionConfig:
    """Validate ``key -> value`` pairs and lay them over ``default``."""
    unknown = sorted(set(values) - set(KEYS))
    if unknown:
        raise ConfigError(f"unknown config key {unknown[0]!r}; keys are {', '.join(KEYS)}")
    config = default
    if "method" in values:
        config = replace(config, method=method_from_name(str(values["method"]), default))
    if values.get("weights") not in (None, ""):
        config = replace(config, weights=str(values["weights"]))
    if "dtype" in values:
        dtype = str(values["dtype"]).lower()
        if dtype not in DTYPES:
            raise ConfigError(f"dtype must be {' or '.join(DTYPES)}, got {values['dtype']!r}")
        config = replace(config, dtype=dtype)
    if "series_index" in values:
        config = replace(config, series_index=_series_index(values["series_index"]))
    return config


def _series_index(value) -> int:
    try:
        index = int(str(value))
    except ValueError:
        index = -1
    if not 0 <= index <= 65535:
        raise ConfigError(f"series_index must be an integer 0-65535, got {value!r}")
    return index


def _json_values(body: str) -> dict:
    try:
        data = json.loads(body)
    except json.JSONDecodeError as error:
        raise ConfigError(f"config text is not valid JSON ({error})") from None
    if not isinstance(data, dict):
        raise ConfigError("JSON config text must be an object")
    parameters = data.get("parameters")
    if not isinstance(parameters, dict):
        return data
    values = {key: parameters[key] for key in KEYS if key in parameters}
    if "method" not in values and parameters.get("config"):
        values["method"] = parameters["config"]
    return values


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
