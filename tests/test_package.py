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


FAULTS = ("import resource, numpy as np, npgd_recon\n"
          "from npgd_recon.recon.base import ReconOptions\n"
          "from npgd_recon.recon.methods import make_reconstructor\n"
          "recon = make_reconstructor('npgd', ReconOptions(device='cpu', precision='fp32'))\n"
          "rng = np.random.default_rng(0)\n"
          "mask = rng.random((4, 192, 160)) < 0.3\n"
          "k = (rng.standard_normal((4, 1, 192, 160)) * mask[:, None]).astype(np.complex64)\n"
          "recon(k, mask, None, 1.0)\n"
          "before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
          "recon(k, mask, None, 1.0)\n"
          "print(npgd_recon.MALLOC_TUNED, resource.getrusage(resource.RUSAGE_SELF).ru_minflt"
          " - before)")


def test_tuned_malloc_keeps_the_networks_temporaries_instead_of_faulting_them_in_again():
    """glibc only: the shipped network on four 192x160 planes (one per call, fp32) faults its
    few-MiB temporaries in page by page on every call untuned (glibc maps them, or trims its
    heap and grows it again); tuned, a second call reuses the heap. NPGD_MALLOC_TUNING=0 or a
    MALLOC_* variable leaves malloc alone."""
    import platform

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("malloc tuning is for glibc")
    base = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    base["THP_MEM_ALLOC_ENABLE"] = "0"  # 4 KiB pages: faults count the pages touched

    def faults(**extra):
        out = subprocess.run([sys.executable, "-c", FAULTS], env={**base, **extra},
                             capture_output=True, text=True, check=True).stdout.split()
        return out[0] == "True", int(out[1])

    tuned, few = faults()
    untuned, many = faults(NPGD_MALLOC_TUNING="0")
    assert tuned and not untuned
    assert few < many / 5, (few, many)
    assert faults(MALLOC_ARENA_MAX="2")[0] is False  # the environment's own tuning wins
