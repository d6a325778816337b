"""Threads as a budget: ``workers`` jobs at once, ``threads`` each, ``workers x threads`` at most
the cores this process may run on (its CPU affinity, not the machine's count).

:func:`plan_threads` splits the cores: ``threads`` defaults to ``cores // workers`` (at least 1,
so more workers than cores share single cores), ``workers`` to ``cores // threads``; naming
both so that they need more cores than there are is a user error. :func:`apply_thread_budget`
gives the per-worker count to both consumers of threads in a reconstruction:

- every BART call (``OMP_NUM_THREADS``, through
  :func:`bart_baselines.runner.set_default_threads`; the runner also sets
  ``OMP_WAIT_POLICY=PASSIVE``);
- torch's intra-op pool (:func:`torch.set_num_threads`). That setting is process-wide, but each
  thread that runs torch operators gets its own OpenMP team of that size (a new thread takes the
  process value the first time it runs a parallel operator), so ``workers`` threads running
  networks at once use ``workers x threads`` cores. Set it once at start, before any worker
  runs; a later change does not reach threads that already ran one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bart_baselines.runner import available_cores, set_default_threads
from npgd_recon.core.errors import NpgdError

__all__ = ["ThreadBudget", "apply_thread_budget", "available_cores", "plan_threads"]


@dataclass(frozen=True)
class ThreadBudget:
    """How the cores are split: ``workers`` jobs at once, ``threads`` each, of ``cores``."""

    workers: int
    threads: int
    cores: int


def plan_threads(workers: int | None = None, threads: int | None = None,
                 cores: int | None = None) -> ThreadBudget:
    """Split ``cores`` (None: :func:`available_cores`): ``threads`` defaults to
    ``cores // workers`` (at least 1), ``workers`` to ``cores // threads`` (neither named: one
    worker per core, one thread each).

    Raises:
        NpgdError: ``workers`` or ``threads`` below 1, or both named and needing more cores
            than there are (also ``threads`` alone above the cores).
    """
    cores = cores or available_cores()
    for name, value in (("workers", workers), ("threads", threads)):
        if value is not None and value < 1:
            raise NpgdError(f"{name} must be at least 1, got {value}")
    if threads is not None and (workers or 1) * threads > cores:
        asked = workers or 1
        raise NpgdError(f"{asked} workers x {threads} threads need {asked * threads} cores, but "
                        f"this process may use {cores}")
    if workers is None:
        workers = max(1, cores // (threads or 1))
    return ThreadBudget(workers, threads or max(1, cores // workers), cores)


def apply_thread_budget(threads: int) -> None:
    """Give every later BART call and torch's intra-op pool ``threads`` threads (per calling
    thread; see the module docstring)."""
    set_default_threads(threads)
    torch.set_num_threads(threads)
