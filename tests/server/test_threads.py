"""Threads as a budget (:mod:`npgd_recon.core.threads`, the server is its user): workers x
threads within the cores, and a server's reconstructions, torch and every BART call, run with
the per-worker count."""

import os
import shutil
import threading

import pytest
import torch

from bart_baselines.runner import default_threads, set_default_threads
from npgd_recon.core.errors import NpgdError
from npgd_recon.core.threads import ThreadBudget, apply_thread_budget, plan_threads
from npgd_recon.recon.classic import ZeroFilled
from npgd_recon.server import session as session_module
from tests.conftest import needs_bart
from tests.server.mrd_client import stream_file


@pytest.mark.parametrize("workers, threads, cores, expected", [
    (None, None, 2, (2, 1)),   # one worker per core
    (None, None, 8, (8, 1)),
    (1, None, 2, (1, 2)),      # one worker gets every core
    (3, None, 8, (3, 2)),      # cores // workers
    (4, None, 2, (4, 1)),      # more workers than cores: one thread each, cores shared
    (None, 3, 8, (2, 3)),      # cores // threads workers
    (2, 4, 8, (2, 4)),
])
def test_plan_splits_the_cores(workers, threads, cores, expected):
    assert plan_threads(workers, threads, cores) == ThreadBudget(*expected, cores)


@pytest.mark.parametrize("workers, threads, message", [
    (2, 2, "2 workers x 2 threads need 4 cores, but this process may use 2"),
    (None, 3, "1 workers x 3 threads need 3 cores, but this process may use 2"),
    (0, None, "workers must be at least 1, got 0"),
    (None, 0, "threads must be at least 1, got 0"),
])
def test_a_budget_beyond_the_cores_is_a_user_error(workers, threads, message):
    with pytest.raises(NpgdError, match=message):
        plan_threads(workers, threads, 2)


def test_the_default_is_the_process_affinity():
    assert plan_threads().cores == len(os.sched_getaffinity(0))


@pytest.fixture
def budget():
    """Apply a thread budget in this process for one test; restore torch and BART after."""
    before = torch.get_num_threads()
    yield apply_thread_budget
    set_default_threads(None)
    torch.set_num_threads(before)


class ThreadProbe(ZeroFilled):
    """Zero filling that records the torch threads of the thread that calls it."""

    def __init__(self) -> None:
        super().__init__(torch.device("cpu"))
        self.seen: list[int] = []

    def reconstruct(self, *args, **kwargs):
        self.seen.append(torch.get_num_threads())
        return super().reconstruct(*args, **kwargs)


def test_torch_threads_follow_the_budget_in_every_worker_thread(budget):
    budget(1)
    seen = []
    worker = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    worker.start()
    worker.join(10)
    assert seen == [1] and default_threads() == 1


@needs_bart
def test_a_server_reconstruction_runs_torch_and_every_bart_call_on_its_budget(
        start_server, raw, budget, tmp_path, monkeypatch):
    """``bart`` on BART_TOOLBOX_PATH records its thread settings and runs the real one."""
    record = tmp_path / "threads.txt"
    wrapper = tmp_path / "toolbox" / "bart"
    wrapper.parent.mkdir()
    wrapper.write_text(f'#!/bin/sh\necho "$OMP_NUM_THREADS $OMP_WAIT_POLICY $1" >> {record}\n'
                       f'exec {shutil.which("bart")} "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("BART_TOOLBOX_PATH", str(wrapper.parent))
    probe = ThreadProbe()
    real = session_module.make_reconstructor
    monkeypatch.setattr(session_module, "make_reconstructor", lambda method, options=None: (
        probe if method == "cstv" else real(method, options)))
    server = start_server(workers=1, threads=1)
    budget(server.pool.budget.threads)
    for config in ("cswv", "cstv"):  # BART's ecalib and pics; the probe behind ecalib
        reply = stream_file(server.address, raw / "multislice.h5", config)
        assert reply.errors == [] and len(reply.images) == 3
    calls = [line.split() for line in record.read_text().splitlines()]
    assert {(threads, policy) for threads, policy, _ in calls} == {("1", "PASSIVE")}
    tools = [tool for _, _, tool in calls]  # 3 slices: pics once each, ecalib at least twice
    assert tools.count("pics") == 3 and tools.count("ecalib") >= 6
    assert set(tools) == {"pics", "ecalib"}
    assert probe.seen == [1, 1, 1]
