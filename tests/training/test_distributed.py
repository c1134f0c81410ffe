"""Data-parallel meta-training: `torchrun --nproc-per-node 2 -m mamlviz train` (gloo, CPU) ends
with the weights of a one-process run (float64: 1e-12), resumes from its checkpoint to the same
weights, and the devices resolve with clear errors. CUDA runs skip where there is no GPU."""

from __future__ import annotations

import itertools
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mamlviz.training import checkpoint as ckpt
from mamlviz.training.config import TrainConfig
from mamlviz.training.distributed import World, resolve_device, shard_bounds
from mamlviz.training.train import fit

REPO = Path(__file__).resolve().parents[2]
ARGS = ["--iterations", "6", "--meta-batch", "5", "--shots", "4", "--dtype", "float64"]
ARGS += ["--checkpoint-every", "3", "--seed", "3", "--quiet"]


def config(**overrides) -> TrainConfig:
    settings = dict(iterations=6, meta_batch=5, shots=4, dtype="float64", checkpoint_every=3)
    return TrainConfig.for_problem("sinusoid", "maml", seed=3, **{**settings, **overrides})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(*args: str, processes: int = 2) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={processes}",
        "--master-addr=127.0.0.1", f"--master-port={free_port()}", "-m", "mamlviz", *args,
    ]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)


def test_shards_cover_the_meta_batch_once():
    for tasks in (2, 5, 25):
        for size in (1, 2, 3):
            if tasks < size:
                continue
            bounds = [shard_bounds(tasks, World(r, size)) for r in range(size)]
            assert bounds[0][0] == 0 and bounds[-1][1] == tasks
            assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds))
            sizes = [b - a for a, b in bounds]
            assert max(sizes) - min(sizes) <= 1
    with pytest.raises(ValueError, match="meta_batch must be at least the number of processes"):
        shard_bounds(1, World(0, 2))


def test_devices_resolve_or_say_why():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="device must be one of"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match=r"no CUDA device.*--device cpu"):
            resolve_device("cuda")


@pytest.mark.slow
def test_two_gloo_processes_equal_one_process_and_resume(tmp_path: Path):
    out = tmp_path / "ddp.pt"
    done = torchrun("train", *ARGS, "--out", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "on 2 processes" in done.stdout and done.stdout.count("trained maml") == 1
    saved = ckpt.load(out)
    assert saved.metadata["hardware"]["processes"] == 2
    want, _ = fit(config(), progress=False)
    for n in want:
        torch.testing.assert_close(saved.tensors["meta"][n], want[n], rtol=1e-12, atol=1e-14)
    moved = fit(config(), progress=False, stop_after=1)[0]
    assert max(float((want[n] - moved[n]).abs().max()) for n in want) > 1e-4  # it trained

    # killed after its first checkpoint (iteration 3), resumed under torchrun: the same weights
    part = tmp_path / "part.pt"
    fit(config(), part, progress=False, stop_after=4)  # saved at 3; 4 is lost
    assert ckpt.load(part).metadata["iteration"] == 3
    resumed = torchrun("train", *ARGS, "--out", str(part), "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    got = ckpt.load(part).tensors["meta"]
    for n in want:
        torch.testing.assert_close(got[n], want[n], rtol=1e-12, atol=1e-14)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_a_cuda_run_equals_the_cpu_run():
    want, _ = fit(config(), progress=False)
    got, _ = fit(config(), progress=False, device="cuda")
    for n in want:
        torch.testing.assert_close(got[n].cpu(), want[n], rtol=1e-9, atol=1e-11)
