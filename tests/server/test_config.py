"""Config messages: names and aliases (unknown names fall back with a warning), TOML /
key=value, JSON (plain and python-ismrmrd-server style, also in a TEXT), Gadgetron XML
properties, NUL-terminated strings, undersampling keys, and the errors."""

import pytest

from npgd_recon.server.config import (
    ConfigError,
    SessionConfig,
    clean,
    parse_config_file,
    parse_config_text,
    parse_text_message,
)

DEFAULT = SessionConfig(method="cswv", weights="server.safetensors")


@pytest.mark.parametrize("name, method", [
    ("npgd", "npgd"), ("ZEROFILL", "zerofill"), ("cstv.xml", "cstv"),
    ("configs/resnet.json", "resnet"), ("default", "cswv"), ("default.xml", "cswv"),
    ("simplefft", "zerofill"), (" fft ", "zerofill"), ("npgd\0", "npgd"),
    ("simplefft\0\0\0garbage", "zerofill"),
])
def test_config_file_names(name, method):
    choice = parse_config_file(name, DEFAULT)
    assert choice.config.method == method and choice.config.weights == "server.safetensors"
    assert choice.warnings == () and choice.named


@pytest.mark.parametrize("parse", [parse_config_file, parse_config_text])
def test_unknown_names_fall_back_to_the_default_with_a_warning(parse):
    choice = parse("invertcontrast\0", SessionConfig("npgd", "x", dtype="uint16"))
    assert choice.config == SessionConfig("npgd", "x", dtype="uint16")
    assert len(choice.warnings) == 1 and "'invertcontrast' is not offered" in choice.warnings[0]


@pytest.mark.parametrize("text, expected", [
    ("", DEFAULT),
    ("\0", DEFAULT),
    ("zerofill", SessionConfig("zerofill", "server.safetensors")),
    ('method = "npgd"\nweights = "npgd-t10k1"  # a shipped model\ndtype = "uint16"\n'
     "series_index = 3\0", SessionConfig("npgd", "npgd-t10k1", "uint16", 3)),
    ("method=zerofill\ndtype = int16\n", SessionConfig("zerofill", "server.safetensors",
                                                       "int16")),
    ('{"method": "cstv", "series_index": 2}\0', SessionConfig("cstv", "server.safetensors",
                                                              series_index=2)),
    ('{"version": "1.0", "parameters": {"config": "simplefft", "customconfig": "",'
     ' "dtype": "uint16"}}', SessionConfig("zerofill", "server.safetensors", "uint16")),
    ('{"parameters": {"config": "simplefft", "customconfig": "npgd"}}',
     SessionConfig("npgd", "server.safetensors")),
    ('<?xml version="1.0"?><configuration><version>2</version><external>'
     '<connect port="9002"/><configuration><property name="method" value="zerofill"/>'
     '<property><name>series_index</name><value>5</value></property></configuration>'
     "</external></configuration>\0", SessionConfig("zerofill", "server.safetensors",
                                                     series_index=5, log_text=False)),
    ("<configuration><property name='log_text' value='true'/></configuration>", DEFAULT),
    ("log_text = false", SessionConfig("cswv", "server.safetensors", log_text=False)),
    ('{"log_text": "on"}', DEFAULT),
    ("undersample = 4\nmask = lines\nseed = 7", SessionConfig("cswv", "server.safetensors",
                                                              undersample=4.0, mask="lines",
                                                              seed=7)),
    ('{"undersample": "2.5", "mask": "POISSON"}',
     SessionConfig("cswv", "server.safetensors", undersample=2.5, mask="poisson")),
    ("undersample = 0", DEFAULT),
    ("cs_lambda = 0.01", SessionConfig("cswv", "server.safetensors", cs_lambda=0.01)),
    ("virtual_coils = 12", SessionConfig("cswv", "server.safetensors", virtual_coils=12)),
    ('{"virtual_coils": 0}', SessionConfig("cswv", "server.safetensors", virtual_coils=0)),
    ("map_sets = 2", SessionConfig("cswv", "server.safetensors", map_sets=2)),
    ('undersample = "none"', DEFAULT),
])
def test_config_texts(text, expected):
    choice = parse_config_text(text, DEFAULT)
    assert choice.config == expected and choice.warnings == ()


@pytest.mark.parametrize("text, message", [
    ('method = "bogus"', "unknown config 'bogus'"),
    ('methd = "npgd"', "unknown config key 'methd'"),
    ('dtype = "int8"', "dtype must be float32, uint16, int16"),
    ("series_index = 70000", "series_index must be an integer 0-65535"),
    ("series_index = x", "series_index must be an integer 0-65535"),
    ("undersample = 1", "undersample must be a number above 1"),
    ("undersample = fast", "undersample must be a number above 1"),
    ("undersample = inf", "undersample must be a number above 1"),
    ('mask = "spiral"', "mask must be vdrad, poisson, lines"),
    ("seed = -1", "seed must be an integer"),
    ("log_text = maybe", "log_text must be true or false"),
    ("cs_lambda = -1", "cs_lambda must be a positive number"),
    ("cs_lambda = lots", "cs_lambda must be a positive number"),
    ("virtual_coils = -1", "virtual_coils must be an integer 0-1024"),
    ("virtual_coils = 2.5", "virtual_coils must be an integer 0-1024"),
    ("map_sets = 3", "map_sets must be 1 or 2"),
    ('{"map_sets": 2.0}', "map_sets must be 1 or 2"),
    ("map_sets = 0", "map_sets must be 1 or 2"),
    ("{not json", "not valid JSON"),
    ("[1, 2]", "neither a name, TOML, JSON nor XML"),
    ("<configuration>", "not valid XML"),
    ("method zerofill please", "neither a name, TOML, JSON nor XML"),
])
def test_config_errors(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_config_text(text, DEFAULT)


def test_text_messages_with_the_reference_json_choose_the_config():
    current = SessionConfig("zerofill", dtype="uint16")
    choice = parse_text_message('{"version": "1.0", "parameters": {"config": "npgd", '
                                '"customconfig": "", "options": "x"}}\0', current, DEFAULT)
    assert choice.config == SessionConfig("npgd", dtype="uint16") and choice.named
    kept = parse_text_message('{"parameters": {"dtype": "int16"}}', current, DEFAULT)
    assert kept.config == SessionConfig("zerofill", dtype="int16") and not kept.named
    fallback = parse_text_message('{"parameters": {"config": "invertcontrast"}}', current,
                                  DEFAULT)
    assert fallback.config.method == "cswv" and len(fallback.warnings) == 1


@pytest.mark.parametrize("text", ["a scanner's note", '{"no": "parameters"}', "{broken",
                                  '{"parameters": 3}', ""])
def test_other_text_messages_are_not_configs(text):
    assert parse_text_message(text, DEFAULT, DEFAULT) is None


def test_clean_cuts_at_the_first_nul():
    assert clean(" abc \0def\0") == "abc"
