"""Config messages: names and aliases, TOML / key=value, JSON (plain and python-ismrmrd-server
style), Gadgetron XML properties, and the errors."""

import pytest

from npgd_recon.server.config import (
    ConfigError,
    SessionConfig,
    parse_config_file,
    parse_config_text,
)

DEFAULT = SessionConfig(method="cswv", weights="server.safetensors")


@pytest.mark.parametrize("name, method", [
    ("npgd", "npgd"), ("ZEROFILL", "zerofill"), ("cstv.xml", "cstv"),
    ("configs/resnet.json", "resnet"), ("default", "cswv"), ("default.xml", "cswv"),
    ("simplefft", "zerofill"), (" fft ", "zerofill"),
])
def test_config_file_names(name, method):
    config = parse_config_file(name, DEFAULT)
    assert config.method == method and config.weights == "server.safetensors"


@pytest.mark.parametrize("text, expected", [
    ("", DEFAULT),
    ("zerofill", SessionConfig("zerofill", "server.safetensors")),
    ('method = "npgd"\nweights = "npgd-t10k1"  # a shipped model\ndtype = "uint16"\n'
     "series_index = 3", SessionConfig("npgd", "npgd-t10k1", "uint16", 3)),
    ("method=zerofill\ndtype = uint16\n", SessionConfig("zerofill", "server.safetensors",
                                                        "uint16")),
    ('{"method": "cstv", "series_index": 2}', SessionConfig("cstv", "server.safetensors",
                                                            series_index=2)),
    ('{"version": "1.0", "parameters": {"config": "simplefft", "customconfig": "",'
     ' "dtype": "uint16"}}', SessionConfig("zerofill", "server.safetensors", "uint16")),
    ('<?xml version="1.0"?><configuration><version>2</version><external>'
     '<connect port="9002"/><configuration><property name="method" value="zerofill"/>'
     '<property><name>series_index</name><value>5</value></property></configuration>'
     "</external></configuration>", SessionConfig("zerofill", "server.safetensors",
                                                   series_index=5)),
])
def test_config_texts(text, expected):
    assert parse_config_text(text, DEFAULT) == expected


@pytest.mark.parametrize("text, message", [
    ("bogus", "unknown config 'bogus'"),
    ('methd = "npgd"', "unknown config key 'methd'"),
    ('dtype = "int8"', "dtype must be float32 or uint16"),
    ("series_index = 70000", "series_index must be an integer 0-65535"),
    ("series_index = x", "series_index must be an integer 0-65535"),
    ("{not json", "not valid JSON"),
    ("[1, 2]", "neither a name, TOML, JSON nor XML"),
    ("<configuration>", "not valid XML"),
    ("method zerofill please", "neither a name, TOML, JSON nor XML"),
])
def test_config_errors(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_config_text(text, DEFAULT)
