"""Package-level settings made on import."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

SHOW = "import npgd_recon, os; print(os.environ['THP_MEM_ALLOC_ENABLE'])"


@pytest.mark.parametrize(("given", "expected"), [(None, "1"), ("0", "0")])
def test_large_tensors_ask_for_huge_pages_unless_the_user_says_otherwise(given, expected):
    env = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"}
    if given is not None:
        env["THP_MEM_ALLOC_ENABLE"] = given
    shown = subprocess.run([sys.executable, "-c", SHOW], env=env, capture_output=True,
                           text=True, check=True).stdout.strip()
    assert shown == expected


def test_the_setting_comes_before_torch_is_imported():
    probe = "import sys, npgd_recon; print('torch' in sys.modules)"
    shown = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                           check=True).stdout.strip()
    assert shown == "False"  # torch reads the variable once, at its first allocation
