"""Every command starts light and explains itself: no heavy import before work, full help."""

import importlib
import subprocess
import sys

import pytest

COMMANDS = {"npgd-recon": "npgd_recon.cli.recon", "npgd-compare": "npgd_recon.cli.compare",
            "npgd-train": "npgd_recon.cli.train", "npgd-simulate": "npgd_recon.cli.simulate",
            "npgd-analyze": "npgd_recon.cli.analyze", "npgd-mask": "sampling.cli",
            "npgd-data": "npgd_recon.cli.data", "npgd-serve": "npgd_recon.cli.serve"}
HEAVY = ("torch", "sigpy", "matplotlib", "skimage", "h5py", "ismrmrd", "pydicom", "scipy")


@pytest.mark.parametrize("module", sorted(COMMANDS.values()))
def test_help_imports_nothing_heavy(module):
    code = (f"import sys; import {module} as m\n"
            "try:\n    m.main(['--help'])\nexcept SystemExit:\n    pass\n"
            f"print(sorted(n for n in {HEAVY!r} if n in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip().splitlines()[-1] == "[]"


def parsers(module):
    """The command's parser and its sub-command parsers."""
    main = importlib.import_module(module)
    build = getattr(main, "build_parser", None)
    if build is None:  # parser built inside main(): capture it
        captured = []
        original = main.Parser.parse_args

        def grab(self, *args, **kwargs):
            captured.append(self)
            raise SystemExit(0)

        main.Parser.parse_args = grab
        try:
            with pytest.raises(SystemExit):
                main.main([])
        finally:
            main.Parser.parse_args = original
        return captured
    parser = build()
    found = [parser]
    for action in parser._actions:
        if action.__class__.__name__ == "_SubParsersAction":
            found += list(action.choices.values())
    return found


@pytest.mark.parametrize("module", sorted(COMMANDS.values()))
def test_every_option_is_described_without_markup(module):
    for parser in parsers(module):
        for action in parser._actions:
            if action.dest in ("help", "command"):
                continue
            assert action.help, f"{parser.prog}: {action.option_strings or action.dest}"
            assert "`" not in action.help
        assert "`" not in parser.format_help()
