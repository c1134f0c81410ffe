"""Checkpoint files: exact round trip, atomic writes, and clear errors for every way a file can
be unusable (truncated, corrupt, unsafe, wrong format, another model's shape)."""

from __future__ import annotations

import pickle

import pytest
import torch

from mamlviz import TrainConfig, fit
from mamlviz.models import MLP
from mamlviz.training import checkpoint as ckpt
from mamlviz.training import hub


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> str:
    """A real (tiny) training checkpoint."""
    path = tmp_path_factory.mktemp("ckpt") / "run.pt"
    config = TrainConfig(iterations=6, meta_batch=2, checkpoint_every=3, snapshot_every=3)
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    fit(config, path, progress=False, command="python -m mamlviz train --iterations 6")
    torch.set_num_threads(previous)
    return str(path)


def test_roundtrip_is_exact(tmp_path) -> None:
    tensors = {"meta": {"w": torch.randn(3, 2)}, "rng": [torch.arange(4, dtype=torch.uint8)]}
    metadata = {"config": {"seed": 1}, "wall_time_s": 0.25, "evaluation": None}
    ckpt.save(tmp_path / "a.pt", metadata, tensors)
    data = ckpt.load(tmp_path / "a.pt")
    assert data.metadata == metadata
    assert torch.equal(data.tensors["meta"]["w"], tensors["meta"]["w"])
    assert torch.equal(data.tensors["rng"][0], tensors["rng"][0])
    assert [p.name for p in tmp_path.iterdir()] == ["a.pt"]  # no temporary file left behind


def test_training_checkpoint_metadata(run: str) -> None:
    meta = ckpt.load(run).metadata
    assert meta["iteration"] == 6 and meta["algorithm"] == "maml" and meta["seed"] == 0
    assert meta["command"] == "python -m mamlviz train --iterations 6"
    assert (
        meta["config"]
        == TrainConfig(iterations=6, meta_batch=2, checkpoint_every=3, snapshot_every=3).to_dict()
    )
    assert meta["torch_version"] == torch.__version__
    assert meta["hardware"]["threads"] == 1 and meta["wall_time_s"] > 0


def test_truncated_file(run: str, tmp_path) -> None:
    data = open(run, "rb").read()
    bad = tmp_path / "truncated.pt"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(ckpt.CheckpointError, match=rf"checkpoint {bad}: unreadable: .*truncated"):
        ckpt.load(bad)


def test_flipped_bytes_in_a_tensor_are_detected(run: str, tmp_path) -> None:
    data = bytearray(open(run, "rb").read())
    weights = ckpt.load(run).tensors["meta"]["fc2.weight"].numpy().tobytes()
    at = bytes(data).find(weights)
    assert at > 0
    data[at + 100] ^= 0xFF  # one byte of fc2.weight: the zip layer alone would not notice
    bad = tmp_path / "flipped.pt"
    bad.write_bytes(bytes(data))
    with pytest.raises(ckpt.CheckpointError, match=rf"{bad}: .*sha256.*corrupt"):
        ckpt.load(bad)


def test_no_flipped_byte_is_ever_used_silently(run: str, tmp_path) -> None:
    """Flip one byte at 60 places across the file: each load either fails with CheckpointError
    or returns exactly the original contents (a flip in zip padding changes nothing)."""
    original = ckpt.load(run)
    data = open(run, "rb").read()
    bad = tmp_path / "flip.pt"
    for at in range(0, len(data), max(1, len(data) // 60)):
        flipped = bytearray(data)
        flipped[at] ^= 0x5A
        bad.write_bytes(bytes(flipped))
        try:
            got = ckpt.load(bad)
        except ckpt.CheckpointError:
            continue
        assert got.metadata == original.metadata
        assert ckpt.digest("", got.tensors) == ckpt.digest("", original.tensors)


def test_unsafe_pickle_is_refused(tmp_path) -> None:
    """weights_only=True: a file that would run code on unpickling is rejected, not executed."""
    bad = tmp_path / "evil.pt"
    torch.save({"format": ckpt.FORMAT, "payload": pickle.loads(pickle.dumps(TrainConfig()))}, bad)
    with pytest.raises(ckpt.CheckpointError, match="refused: the file holds Python objects") as err:
        ckpt.load(bad)
    assert "weights_only" not in str(err.value)  # never torch's advice to load it unsafely


@pytest.mark.parametrize(
    "content", [b"", b"just some text\n", bytes(range(256)) * 40], ids=["empty", "text", "random"]
)
def test_non_checkpoint_files_get_our_message(content: bytes, tmp_path) -> None:
    bad = tmp_path / "x.pt"
    bad.write_bytes(content)
    with pytest.raises(ckpt.CheckpointError, match="not a mamlviz checkpoint") as err:
        ckpt.load(bad)
    assert "weights_only" not in str(err.value) and "torch" not in str(err.value)


def test_wrong_format_version_and_missing_keys(tmp_path) -> None:
    path = tmp_path / "v2.pt"
    torch.save({"format": ckpt.FORMAT, "format_version": 2}, path)
    with pytest.raises(ckpt.CheckpointError, match="format version 2 is not supported"):
        ckpt.load(path)
    torch.save({"format": ckpt.FORMAT, "format_version": 1, "metadata": "{}"}, path)
    with pytest.raises(ckpt.CheckpointError, match="missing keys: tensors, sha256"):
        ckpt.load(path)
    torch.save({"weights": torch.zeros(2)}, path)
    with pytest.raises(ckpt.CheckpointError, match="not a mamlviz-checkpoint file"):
        ckpt.load(path)
    with pytest.raises(ckpt.CheckpointError, match="no such file"):
        ckpt.load(tmp_path / "missing.pt")


def test_checkpoint_of_another_model_shape(run: str, tmp_path) -> None:
    data = ckpt.load(run)
    wide = {n: p.detach() for n, p in MLP(hidden=(64, 64)).named_parameters()}
    path = tmp_path / "wide.pt"
    ckpt.save(path, data.metadata, {**data.tensors, "meta": wide})
    message = r"param fc1.weight has shape \[64, 1\] in the checkpoint but \[40, 1\] in the model"
    with pytest.raises(ckpt.CheckpointError, match=message):
        hub.load(path)


def test_failed_write_keeps_the_previous_file(tmp_path, monkeypatch) -> None:
    path = tmp_path / "a.pt"
    ckpt.save(path, {"v": 1}, {"w": torch.ones(2)})

    def broken_save(obj, f):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        ckpt.save(path, {"v": 2}, {"w": torch.zeros(2)})
    monkeypatch.undo()
    assert ckpt.load(path).metadata == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["a.pt"]


def test_update_metadata_rewrites_a_verified_file(run: str, tmp_path) -> None:
    path = tmp_path / "copy.pt"
    path.write_bytes(open(run, "rb").read())
    ckpt.update_metadata(path, evaluation={"mean": [1.0]})
    data = ckpt.load(path)
    assert data.metadata["evaluation"] == {"mean": [1.0]}
    assert data.metadata["iteration"] == 6
