"""Omniglot: loading, validation, caching, download checks, split and episode sampler.

The full preprocessing of the shared copy runs once per session (``loaded`` fixture); every
other test either reads that cache or builds small broken copies in ``tmp_path``.
"""

from __future__ import annotations

import hashlib
import io
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import torch

from mamlviz.tasks.omniglot import OmniglotSplit, OmniglotTasks, make_split
from mamlviz.tasks.omniglot_data import (
    CACHE_NAME,
    ENV_ROOT,
    URLS,
    OmniglotArrays,
    OmniglotDataError,
    _cached_source,
    default_omniglot_root,
    download_file,
    load_omniglot,
)


class Loaded(NamedTuple):
    arrays: OmniglotArrays
    cache_dir: Path
    first_seconds: float


@pytest.fixture(scope="session")
def loaded(omniglot_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Loaded:
    cache_dir = tmp_path_factory.mktemp("mamlviz_cache")
    start = time.perf_counter()
    arrays = load_omniglot(root=omniglot_dir, cache_dir=cache_dir, progress=False)
    return Loaded(arrays, cache_dir, time.perf_counter() - start)


@pytest.fixture(autouse=True)
def _no_env_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_ROOT, raising=False)  # a developer's own setting must not leak in


def files_under(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


# ---------------------------------------------------------------- loading and the cache


def test_shared_copy_loads_and_validates(loaded: Loaded) -> None:
    a = loaded.arrays
    assert a.images.shape == (1623, 20, 28, 28) and a.images.dtype == torch.uint8
    assert a.background.dtype == torch.bool and int(a.background.sum()) == 964
    assert len(a.alphabets) == len(a.characters) == 1623
    assert len(set(a.alphabets[:964])) == 30 and len(set(a.alphabets[964:])) == 20
    assert a.alphabets[0] == "Alphabet_of_the_Magi" and a.characters[0] == "character01"
    assert a.alphabets[964] == "Angelic" and a.alphabets[-1] == "ULOG"
    assert a.characters[:2] == ["character01", "character02"]
    # Ink is high: strokes near 255 on a paper of 0, and paper dominates every drawing.
    assert int(a.images.min()) == 0 and int(a.images.max()) == 255
    assert (a.images == 0).float().mean() > 0.6
    assert bool((a.images.flatten(2).amax(-1) > 128).all())  # no blank drawing


def test_second_load_uses_cache_and_is_10x_faster(loaded: Loaded, omniglot_dir: Path) -> None:
    assert files_under(loaded.cache_dir) == [f"omniglot/{CACHE_NAME}"]
    start = time.perf_counter()
    again = load_omniglot(root=omniglot_dir, cache_dir=loaded.cache_dir, progress=False)
    second = time.perf_counter() - start
    print(f"first load {loaded.first_seconds:.2f} s, cached load {second:.3f} s")
    assert torch.equal(again.images, loaded.arrays.images)
    assert again.alphabets == loaded.arrays.alphabets
    assert loaded.first_seconds >= 10 * second


def test_env_vars_pick_root_and_cache(
    loaded: Loaded, omniglot_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_ROOT, str(omniglot_dir))
    monkeypatch.setenv("MAMLVIZ_CACHE", str(loaded.cache_dir))
    assert default_omniglot_root() == omniglot_dir
    assert torch.equal(load_omniglot(progress=False).background, loaded.arrays.background)


# ---------------------------------------------------------------- broken raw copies


def _write_zip(path: Path, entries: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return path


def _real_names(omniglot_dir: Path) -> list[str]:
    with zipfile.ZipFile(omniglot_dir / "images_background.zip") as zf:
        return [n for n in zf.namelist() if n.endswith(".png")]


def _truncated(src: Path, dst: Path) -> None:
    dst.write_bytes(src.read_bytes()[: src.stat().st_size // 2])


def _missing_greek(src: Path, dst: Path) -> None:
    # Validation runs before any decoding, so empty entries are enough to test it.
    _write_zip(dst, {n: b"" for n in _real_names(src.parent) if "/Greek/" not in n})


def _escaping(src: Path, dst: Path) -> None:
    with zipfile.ZipFile(src) as zf:
        entries = {n: zf.read(n) for n in _real_names(src.parent)[:3]}
    _write_zip(dst, {**entries, "../evil.png": b"x"})


def _bad_crc(src: Path, dst: Path) -> None:
    # A complete layout whose stored bytes no longer match their CRC-32.
    _write_zip(dst, {n: b"A" * 64 for n in _real_names(src.parent)})
    dst.write_bytes(dst.read_bytes().replace(b"A" * 64, b"B" * 64))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (_truncated, r"images_background\.zip: not a readable zip, truncated or corrupt"),
        (_missing_greek, r"alphabet 'Greek' missing; expected 30 alphabets, found 29"),
        (_escaping, r"entry '\.\./evil\.png' escapes its folder"),
        (_bad_crc, r"images_background\.zip: entry .* is corrupt \(Bad CRC-32"),
    ],
    ids=["truncated", "missing_alphabet", "escaping_entry", "bad_crc"],
)
def test_broken_zip_is_refused(make, message: str, omniglot_dir: Path, tmp_path: Path) -> None:
    root, cache = tmp_path / "root", tmp_path / "cache"
    root.mkdir()
    make(omniglot_dir / "images_background.zip", root / "images_background.zip")
    (root / "images_evaluation.zip").symlink_to(omniglot_dir / "images_evaluation.zip")
    with pytest.raises(OmniglotDataError, match=message):
        load_omniglot(root=root, cache_dir=cache, progress=False)
    assert not cache.exists() or files_under(cache) == []  # no partial cache


def test_unpacked_folder_is_validated(omniglot_dir: Path, tmp_path: Path) -> None:
    with zipfile.ZipFile(omniglot_dir / "images_background.zip") as zf:
        zf.extractall(
            tmp_path, [n for n in zf.namelist() if n.startswith("images_background/Greek/")]
        )
    (tmp_path / "images_evaluation.zip").symlink_to(omniglot_dir / "images_evaluation.zip")
    with pytest.raises(OmniglotDataError, match=r"expected 30 alphabets, found 1"):
        load_omniglot(root=tmp_path, cache_dir=tmp_path / "cache", progress=False)


def test_root_without_zips_names_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"images_background\.zip .*images_evaluation"):
        load_omniglot(root=tmp_path, cache_dir=tmp_path / "cache", progress=False)


def test_an_explicit_folder_wins_over_a_cache_made_from_another(
    loaded: Loaded, omniglot_dir: Path, tmp_path: Path
) -> None:
    """The cache once served whatever it held, whichever folder was given."""
    cache_dir = tmp_path / "cache"
    (cache_dir / "omniglot").mkdir(parents=True)
    cache = cache_dir / "omniglot" / CACHE_NAME
    cache.write_bytes((loaded.cache_dir / "omniglot" / CACHE_NAME).read_bytes())
    other = tmp_path / "other"
    other.mkdir()
    for part in ("images_background.zip", "images_evaluation.zip"):
        (other / part).write_bytes((omniglot_dir / part).read_bytes())
    made = cache.stat().st_mtime_ns
    load_omniglot(cache_dir=cache_dir, progress=False)  # no folder given: the cache serves
    assert cache.stat().st_mtime_ns == made
    arrays = load_omniglot(root=other, cache_dir=cache_dir, progress=False)  # rebuilt from it
    source = _cached_source(cache)
    assert source["images_background"]["path"] == str((other / "images_background.zip").resolve())
    assert torch.equal(arrays.images, loaded.arrays.images)  # same images, another folder
    load_omniglot(root=other, cache_dir=cache_dir, progress=False)  # now the cache serves it
    assert _cached_source(cache) == source


# ---------------------------------------------------------------- broken cache files


def _tampered(good: Path, bad: Path) -> None:
    with np.load(good) as npz:
        arrays = dict(npz)
    arrays["images"][5, 3, 14, 14] ^= 1  # one pixel; the stored sha256 is kept
    with bad.open("wb") as f:
        np.savez(f, **arrays)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda good, bad: bad.write_bytes(b"garbage, not an npz"), "unreadable or truncated"),
        (lambda good, bad: bad.write_bytes(good.read_bytes()[:1_000_000]), "unreadable"),
        (_tampered, "sha256 mismatch"),
    ],
    ids=["garbage", "truncated", "tampered"],
)
def test_corrupt_cache_is_never_used(
    make, message: str, loaded: Loaded, omniglot_dir: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "omniglot" / CACHE_NAME
    bad.parent.mkdir()
    make(loaded.cache_dir / "omniglot" / CACHE_NAME, bad)
    before = bad.read_bytes()
    with pytest.raises(OmniglotDataError, match=rf"cache file .*{CACHE_NAME}.*{message}"):
        load_omniglot(root=omniglot_dir, cache_dir=tmp_path, progress=False)
    assert files_under(tmp_path) == [f"omniglot/{CACHE_NAME}"]  # nothing new, nothing partial
    assert bad.read_bytes() == before  # not silently rebuilt either


# ---------------------------------------------------------------- downloads (no network)


def test_download_from_file_url(tmp_path: Path) -> None:
    src = tmp_path / "src.zip"
    src.write_bytes(b"pretend zip " * 1000)
    md5 = hashlib.md5(src.read_bytes()).hexdigest()
    dest = download_file(src.as_uri(), tmp_path / "out" / "a.zip", md5, progress=False)
    assert dest.read_bytes() == src.read_bytes()
    assert files_under(tmp_path / "out") == ["a.zip"]


def test_download_md5_mismatch_deletes_file(tmp_path: Path) -> None:
    with pytest.raises(
        OmniglotDataError, match=r"has MD5 [0-9a-f]{32}, expected 68d2efa1.*deleted"
    ):
        download_file(
            URLS["images_background"],
            tmp_path / "images_background.zip",
            "68d2efa1b9178cc56df9314c21c6e718",
            opener=lambda url: io.BytesIO(b"not the omniglot zip"),
            progress=False,
        )
    assert files_under(tmp_path) == []


def test_no_data_no_network_says_how_to_get_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(OmniglotDataError) as info:
        load_omniglot(cache_dir=tmp_path, progress=False)
    for needle in [*URLS.values(), ENV_ROOT, "root=", "download=True", str(tmp_path / "omniglot")]:
        assert needle in str(info.value)

    def offline(url: str) -> io.BytesIO:
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(
        OmniglotDataError, match=r"(?s)downloading .*failed.*no network.*MAMLVIZ_OMNIGLOT"
    ):
        load_omniglot(cache_dir=tmp_path, download=True, progress=False)
    assert files_under(tmp_path) == []


# ---------------------------------------------------------------- split and sampler


@pytest.fixture(scope="module")
def tasks(loaded: Loaded) -> OmniglotTasks:
    return OmniglotTasks(loaded.arrays)


def _as_bytes(x: torch.Tensor) -> list[bytes]:
    """Each image of a float [..., 1, 28, 28] batch as raw uint8 bytes, for set membership."""
    return [bytes(im) for im in (x * 255).round().to(torch.uint8).reshape(-1, 784).numpy()]


def test_split_is_standard_and_recorded(loaded: Loaded) -> None:
    split = make_split(loaded.arrays, seed=3)
    assert (len(split.train), len(split.val), len(split.test)) == (1100, 100, 423)
    assert sorted(torch.cat([split.train, split.val, split.test]).tolist()) == list(range(1623))
    assert torch.equal(make_split(loaded.arrays, seed=3).train, split.train)
    assert not torch.equal(make_split(loaded.arrays, seed=4).train, split.train)
    restored = OmniglotSplit.from_state_dict(split.state_dict())
    assert restored.seed == 3 and torch.equal(restored.test, split.test)
    with pytest.raises(ValueError, match="val_classes"):
        make_split(loaded.arrays, val_classes=1199)


def test_rotation_policy(loaded: Loaded, tasks: OmniglotTasks) -> None:
    assert [tasks.num_classes(s) for s in ("train", "val", "test")] == [4400, 100, 423]
    rotated = OmniglotTasks(loaded.arrays, tasks.partition, rotate_eval=True)
    assert rotated.num_classes("test") == 4 * 423
    assert tasks.view("val").num_classes() == 100  # a view shares the images, binds the split


def test_episode_shapes_labels_and_disjoint_drawings(tasks: OmniglotTasks) -> None:
    ways, shots, query, batch = 5, 3, 4, 6
    ep = tasks.view(ways=ways).sample(torch.Generator().manual_seed(0), shots, query, batch)
    assert ep.support.x.shape == (batch, ways * shots, 1, 28, 28)
    assert ep.query.x.shape == (batch, ways * query, 1, 28, 28)
    assert ep.support.x.dtype == torch.float32 and ep.support.y.dtype == torch.int64
    assert 0 <= float(ep.support.x.min()) and float(ep.query.x.max()) <= 1
    for t in range(batch):
        assert ep.support.y[t].bincount(minlength=ways).tolist() == [shots] * ways
        assert ep.query.y[t].bincount(minlength=ways).tolist() == [query] * ways
        for c in range(ways):
            s = _as_bytes(ep.support.x[t][ep.support.y[t] == c])
            q = _as_bytes(ep.query.x[t][ep.query.y[t] == c])
            assert len(set(s + q)) == shots + query  # all drawings of a class distinct


def test_sampling_is_seeded(tasks: OmniglotTasks) -> None:
    def draw(seed: int) -> torch.Tensor:
        return tasks.sample(torch.Generator().manual_seed(seed), 1, 5, 4).query.x

    assert torch.equal(draw(7), draw(7))
    assert not torch.equal(draw(7), draw(8))


def test_train_tasks_never_show_test_characters(loaded: Loaded, tasks: OmniglotTasks) -> None:
    def images(ids: torch.Tensor) -> set[bytes]:
        ims = loaded.arrays.images[ids]
        return {b for k in range(4) for b in _as_bytes(ims.rot90(k, (-2, -1)).float() / 255)}

    train, test = images(tasks.partition.train), images(tasks.partition.test)
    upright = set(_as_bytes(loaded.arrays.images[tasks.partition.train].float() / 255))
    ep = tasks.view(ways=20).sample(torch.Generator().manual_seed(1), 5, 5, 16)
    seen = set(_as_bytes(ep.support.x) + _as_bytes(ep.query.x))
    assert seen <= train and not seen & test
    assert seen - upright  # rotated copies do occur in training tasks
    test_ep = tasks.view("test", 20).sample(torch.Generator().manual_seed(1), 5, 5, 4)
    test_upright = set(_as_bytes(loaded.arrays.images[tasks.partition.test].float() / 255))
    assert set(_as_bytes(test_ep.support.x)) <= test_upright  # test classes are unrotated


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"ways": 1}, "ways"),
        ({"ways": 101, "split": "val"}, "ways"),
        ({"shots": 0}, "shots"),
        ({"query_shots": 0}, "query_shots"),
        ({"shots": 10, "query_shots": 11}, "query_shots"),
        ({"meta_batch": 0}, "meta_batch"),
        ({"split": "valid"}, "split"),
    ],
)
def test_invalid_arguments_name_the_argument(
    tasks: OmniglotTasks, kwargs: dict[str, object], name: str
) -> None:
    args = {"ways": 5, "split": "train", "shots": 1, "query_shots": 1, "meta_batch": 2, **kwargs}
    with pytest.raises(ValueError, match=name):
        view = tasks.view(args.pop("split"), args.pop("ways"))  # type: ignore[arg-type]
        view.sample(torch.Generator().manual_seed(0), **args)  # type: ignore[arg-type]
