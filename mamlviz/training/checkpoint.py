"""Checkpoint files: safe to load, verified, written atomically.

A checkpoint is one ``torch.save`` file holding a plain dict::

    {"format": "mamlviz-checkpoint", "format_version": 1,
     "metadata": "<JSON text>",   # config, versions, command, wall time, hardware, evaluation
     "tensors": {...},            # nested dicts/lists of tensors: meta-params, optimizer, RNG
     "sha256": "<hex>"}           # over the metadata text and every tensor, in a fixed order

It is read only with ``torch.load(..., weights_only=True)``, which unpickles tensors and plain
containers but never arbitrary objects. Every failure (a truncated or corrupt file, a missing
key, another format version, a digest that does not match, a model of another shape) raises
:class:`CheckpointError` naming the file: a damaged checkpoint is never used.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from mamlviz.errors import MamlvizError

FORMAT = "mamlviz-checkpoint"
FORMAT_VERSION = 1
KEYS = ("format", "format_version", "metadata", "tensors", "sha256")
UNREADABLE = "unreadable: not a mamlviz checkpoint, or truncated or corrupt"


class CheckpointError(MamlvizError, ValueError):
    """A checkpoint file cannot be used; the message names the file and the reason."""

    def __init__(self, path: str | os.PathLike[str], reason: str):
        self.path = str(path)
        super().__init__(f"checkpoint {self.path}: {reason}")


@dataclass
class CheckpointData:
    """The contents of a verified checkpoint file."""

    path: str
    metadata: dict[str, Any]
    tensors: dict[str, Any]


def _leaves(obj: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Every leaf of a nested dict/list structure with its path, keys in sorted order."""
    if isinstance(obj, Mapping):
        for key in sorted(obj, key=str):
            yield from _leaves(obj[key], f"{prefix}/{key}")
    elif isinstance(obj, list | tuple):
        for i, item in enumerate(obj):
            yield from _leaves(item, f"{prefix}/{i}")
    else:
        yield prefix, obj


def digest(metadata_text: str, tensors: Mapping[str, Any]) -> str:
    """sha256 over the metadata text and each leaf's path, dtype, shape and bytes."""
    h = hashlib.sha256(metadata_text.encode())
    for path, leaf in _leaves(tensors):
        h.update(path.encode())
        if isinstance(leaf, Tensor):
            t = leaf.detach().cpu().contiguous()
            h.update(f"{t.dtype}{list(t.shape)}".encode())
            h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        else:
            h.update(repr(leaf).encode())
    return h.hexdigest()


def save(path: str | os.PathLike[str], metadata: Mapping[str, Any], tensors: Mapping[str, Any]):
    """Write a checkpoint atomically: a temporary file in the same folder, then ``os.replace``.

    A crash mid-write therefore leaves the previous checkpoint intact, never a partial file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(metadata, sort_keys=True, allow_nan=False)
    blob = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "metadata": text,
        "tensors": dict(tensors),
        "sha256": digest(text, tensors),
    }
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(blob, f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a checkpoint is an ordinary shared file
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def load(path: str | os.PathLike[str]) -> CheckpointData:
    """Read and verify a checkpoint (``weights_only=True``); raises :class:`CheckpointError`."""
    if not Path(path).is_file():
        raise CheckpointError(path, "no such file")
    if Path(path).stat().st_size == 0:
        raise CheckpointError(path, "the file is empty: not a mamlviz checkpoint")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "weights only" in str(err).lower() or "unsupported global" in str(err).lower():
            # Never relay torch's advice to retry with weights_only=False: that would run code.
            reason = (
                "refused: the file holds Python objects, not a mamlviz checkpoint; it was not"
                " loaded (loading it could run code)"
            )
            raise CheckpointError(path, reason) from None
        raise CheckpointError(path, UNREADABLE) from None
    except Exception:  # any zip or read failure: the file is unusable, whatever torch says
        raise CheckpointError(path, UNREADABLE) from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise CheckpointError(path, f"not a {FORMAT} file")
    if blob.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            path,
            f"format version {blob.get('format_version')!r} is not supported"
            f" (this mamlviz reads version {FORMAT_VERSION})",
        )
    missing = [k for k in KEYS if k not in blob]
    if missing:
        raise CheckpointError(path, f"missing keys: {', '.join(missing)}")
    if digest(blob["metadata"], blob["tensors"]) != blob["sha256"]:
        raise CheckpointError(path, "contents do not match the sha256 stored at save (corrupt)")
    try:
        metadata = json.loads(blob["metadata"])
    except json.JSONDecodeError as err:
        raise CheckpointError(path, f"metadata is not valid JSON ({err})") from err
    return CheckpointData(str(path), metadata, blob["tensors"])


def check_params(
    path: str | os.PathLike[str], saved: Mapping[str, Tensor], expected: Mapping[str, Tensor]
) -> None:
    """Raise :class:`CheckpointError` unless ``saved`` has ``expected``'s names and shapes."""
    missing = [n for n in expected if n not in saved]
    extra = [n for n in saved if n not in expected]
    if missing or extra:
        raise CheckpointError(
            path, f"parameters differ from the model: missing {missing}, unexpected {extra}"
        )
    for name, want in expected.items():
        got = saved[name]
        if tuple(got.shape) != tuple(want.shape):
            raise CheckpointError(
                path,
                f"param {name} has shape {list(got.shape)} in the checkpoint but"
                f" {list(want.shape)} in the model",
            )


def update_metadata(
    path: str | os.PathLike[str], tensors: Mapping[str, Any] | None = None, **fields: Any
) -> CheckpointData:
    """Verify ``path``, set metadata ``fields`` (e.g. ``evaluation=...``) and ``tensors``
    entries, and rewrite it."""
    data = load(path)
    data.metadata.update(fields)
    data.tensors.update(tensors or {})
    save(path, data.metadata, data.tensors)
    return data
