"""Omniglot on disk: find, download, validate, preprocess to 28x28 once, and cache.

Where the data comes from, first match wins:

1. the preprocessed cache ``<cache>/omniglot/omniglot28_v1.npz``, where ``<cache>`` is
   ``cache_dir=``, else env ``MAMLVIZ_CACHE``, else ``~/.cache/mamlviz``;
2. ``root=``, else env ``MAMLVIZ_OMNIGLOT``: a folder holding ``images_background.zip`` and
   ``images_evaluation.zip`` (or those two folders already unpacked);
3. zips downloaded earlier into ``<cache>/omniglot/``;
4. with ``download=True``: the official zips from GitHub, checked against their MD5.

Raw copies are validated by structure (50 alphabets, 1623 characters, 20 drawings each), not by
checksum, so re-zipped copies work. The cache holds ``images`` uint8 [1623, 20, 28, 28]: classes
in the order background then evaluation, alphabets sorted, characters sorted; drawings sorted by
file name (drawers _01.._20). Each 105x105 PNG is resized with LANCZOS and inverted, so ink is
high (strokes ~1 on a 0 background after ``/255``, as in MAML). The cache also holds per-class
``alphabets``, ``characters`` and ``background`` plus a JSON ``meta`` with the format version
and a sha256 of all arrays, checked on every load. A cache that fails the check raises
``OmniglotDataError``: it is never used, nor silently rebuilt (delete the file to rebuild). All
files are written to a temporary name and renamed, so a failure leaves no partial file behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import multiprocessing
import os
import sys
import tempfile
import urllib.request
import warnings
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from mamlviz.cache import ENV_CACHE, default_cache_dir  # noqa: F401  (re-exported)
from mamlviz.errors import MamlvizError

PARTS = ("images_background", "images_evaluation")
URLS = {
    p: f"https://raw.githubusercontent.com/brendenlake/omniglot/master/python/{p}.zip"
    for p in PARTS
}
MD5 = {
    "images_background": "68d2efa1b9178cc56df9314c21c6e718",
    "images_evaluation": "6b91aef0f799c5bb55b94e3f2daec811",
}
ENV_ROOT = "MAMLVIZ_OMNIGLOT"
FORMAT_VERSION = 1
CACHE_NAME = f"omniglot28_v{FORMAT_VERSION}.npz"
NUM_CLASSES, DRAWINGS, SIZE = 1623, 20, 28

# Characters per alphabet in the official release. Knowing the expected layout lets validation
# say exactly what is missing instead of only "wrong count".
_EXPECTED = {
    "images_background": """
        Alphabet_of_the_Magi 20  Anglo-Saxon_Futhorc 29  Arcadian 26  Armenian 41
        Asomtavruli_(Georgian) 40  Balinese 24  Bengali 46
        Blackfoot_(Canadian_Aboriginal_Syllabics) 14  Braille 26  Burmese_(Myanmar) 34
        Cyrillic 33  Early_Aramaic 22  Futurama 26  Grantha 43  Greek 24  Gujarati 48  Hebrew 22
        Inuktitut_(Canadian_Aboriginal_Syllabics) 16  Japanese_(hiragana) 52
        Japanese_(katakana) 47  Korean 40  Latin 26  Malay_(Jawi_-_Arabic) 40
        Mkhedruli_(Georgian) 41  N_Ko 33  Ojibwe_(Canadian_Aboriginal_Syllabics) 14  Sanskrit 42
        Syriac_(Estrangelo) 23  Tagalog 17  Tifinagh 55""",
    "images_evaluation": """
        Angelic 20  Atemayar_Qelisayer 26  Atlantean 26  Aurek-Besh 26  Avesta 26  Ge_ez 26
        Glagolitic 45  Gurmukhi 45  Kannada 41  Keble 26  Malayalam 47  Manipuri 40  Mongolian 30
        Old_Church_Slavonic_(Cyrillic) 45  Oriya 46  Sylheti 28  Syriac_(Serto) 23  Tengwar 25
        Tibetan 42  ULOG 26""",
}
ALPHABETS: dict[str, dict[str, int]] = {
    part: {a: int(n) for a, n in zip(text.split()[::2], text.split()[1::2], strict=True)}
    for part, text in _EXPECTED.items()
}


class OmniglotDataError(MamlvizError, RuntimeError):
    """The Omniglot data is missing, incomplete, unsafe or corrupt; the message says which file."""


@dataclass(frozen=True)
class OmniglotArrays:
    """All 1623 characters x 20 drawings, in the fixed class order described in the module doc."""

    images: torch.Tensor  # uint8 [1623, 20, 28, 28]; ink = 255, paper = 0
    alphabets: list[str]  # per class
    characters: list[str]  # per class, e.g. "character07"
    background: torch.Tensor  # bool [1623]; True if from images_background

    def __len__(self) -> int:
        return int(self.images.shape[0])


def default_omniglot_root() -> Path | None:
    """The folder named by env ``MAMLVIZ_OMNIGLOT``, or None when it is unset."""
    value = os.environ.get(ENV_ROOT)
    return Path(value).expanduser() if value else None


def _how_to_get(folder: Path) -> str:
    """Instructions for getting the raw zips by hand; part of every 'not found' error."""
    urls = "\n".join(f"    {u}" for u in URLS.values())
    return (
        "Get the Omniglot zips in one of these ways:\n"
        f"  1. `python -m mamlviz data --download` or load_omniglot(download=True) downloads\n"
        f"     them into {folder} (needs internet);\n"
        f"  2. download\n{urls}\n"
        f"     and put both zips in {folder}, or in any folder that you pass as\n"
        f"     load_omniglot(root=...) or name in the env var {ENV_ROOT}."
    )


def download_file(
    url: str,
    dest: str | Path,
    md5: str | None = None,
    *,
    opener: Callable[[str], IO[bytes]] | None = None,
    progress: bool = True,
) -> Path:
    """Download ``url`` to ``dest`` via a temp file and an atomic rename, checking ``md5``.

    ``opener`` defaults to ``urllib.request.urlopen``; it is injectable so tests can run
    without a network. On a wrong MD5 or any failure nothing is left at ``dest``'s folder.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    digest = hashlib.md5(usedforsecurity=False)
    try:
        with os.fdopen(fd, "wb") as out, (opener or urllib.request.urlopen)(url) as response:
            headers = getattr(response, "headers", None)
            total = int(headers.get("Content-Length") or 0) if headers is not None else 0
            bar = tqdm(
                total=total or None, unit="B", unit_scale=True, desc=dest.name, disable=not progress
            )
            with bar:
                while chunk := response.read(1 << 16):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
        if md5 is not None and digest.hexdigest() != md5:
            raise OmniglotDataError(
                f"{dest.name} downloaded from {url} has MD5 {digest.hexdigest()}, expected {md5};"
                " the file was deleted"
            )
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a cache may be shared
        os.replace(tmp, dest)
    except OSError as err:  # urllib's URLError is an OSError
        raise OmniglotDataError(f"downloading {url} failed: {err}") from err
    finally:
        Path(tmp).unlink(missing_ok=True)
    return dest


def _find_parts(folder: Path) -> dict[str, Path]:
    """The zip (preferred) or unpacked folder of each part present in ``folder``."""
    found = {}
    for part in PARTS:
        for candidate in (folder / f"{part}.zip", folder / part):
            if candidate.exists():
                found[part] = candidate
                break
    return found


def fetch_omniglot(
    folder: str | Path | None = None,
    *,
    opener: Callable[[str], IO[bytes]] | None = None,
    progress: bool = True,
) -> dict[str, str]:
    """Make ``folder`` (default ``<cache>/omniglot``) hold both official zips.

    A part already there (zip or unpacked folder) is kept as it is: local copies may be
    re-zipped, so their bytes are not compared with the upstream MD5 (reading them validates
    them instead). A missing part is downloaded from :data:`URLS` and must match :data:`MD5`.
    Returns ``{part: "present" | "downloaded"}``.
    """
    folder = Path(folder).expanduser() if folder is not None else default_cache_dir() / "omniglot"
    found = _find_parts(folder)
    status = {}
    try:
        for part in PARTS:
            if part in found:
                status[part] = "present"
                continue
            dest = folder / f"{part}.zip"
            download_file(URLS[part], dest, MD5[part], opener=opener, progress=progress)
            status[part] = "downloaded"
    except OmniglotDataError as err:
        raise OmniglotDataError(f"{err}\n{_how_to_get(folder)}") from err
    return status


def _members(path: Path) -> list[str]:
    """Entry names of a zip; for a folder, its files relative to the folder's parent."""
    if path.is_dir():
        return sorted(p.relative_to(path.parent).as_posix() for p in path.rglob("*") if p.is_file())
    try:
        with zipfile.ZipFile(path) as zf:
            return zf.namelist()
    except (zipfile.BadZipFile, OSError) as err:
        raise OmniglotDataError(
            f"{path}: not a readable zip, truncated or corrupt ({err})"
        ) from err


def _index(path: Path, part: str) -> list[tuple[str, str, list[str]]]:
    """Check the layout of one part; return (alphabet, character, 20 entry names) in order."""
    tree: dict[str, dict[str, list[str]]] = {}
    for name in _members(path):
        pieces = name.replace("\\", "/").split("/")
        if name.startswith(("/", "\\")) or ".." in pieces or ":" in pieces[0]:
            raise OmniglotDataError(
                f"{path.name}: entry {name!r} escapes its folder (absolute path or '..'); refusing"
                " to read this archive"
            )
        if pieces[0] == "__MACOSX" or pieces[-1].startswith(".") or not pieces[-1]:
            continue  # macOS metadata, hidden files and directory entries carry no images
        if pieces[0] != part:
            raise OmniglotDataError(f"{path.name}: entry {name!r} is outside the folder '{part}/'")
        if len(pieces) == 4 and pieces[3].endswith(".png"):
            tree.setdefault(pieces[1], {}).setdefault(pieces[2], []).append(name)
    expected, problems = ALPHABETS[part], []
    problems += [f"alphabet {a!r} missing" for a in sorted(expected.keys() - tree.keys())]
    problems += [f"unexpected alphabet {a!r}" for a in sorted(tree.keys() - expected.keys())]
    for alphabet in sorted(expected.keys() & tree.keys()):
        chars = tree[alphabet]
        want = {f"character{i:02d}" for i in range(1, expected[alphabet] + 1)}
        problems += [f"'{alphabet}/{c}' missing" for c in sorted(want - chars.keys())]
        problems += [f"unexpected '{alphabet}/{c}'" for c in sorted(chars.keys() - want)]
        problems += [
            f"'{alphabet}/{c}' has {len(chars[c])} drawings, expected {DRAWINGS}"
            for c in sorted(want & chars.keys())
            if len(set(chars[c])) != DRAWINGS
        ]
    if problems:
        shown = "; ".join(problems[:8]) + (f"; ... {len(problems) - 8} more" * (len(problems) > 8))
        found_chars = sum(map(len, tree.values()))
        raise OmniglotDataError(
            f"{path.name}: {shown}; expected {len(expected)} alphabets, found {len(tree)}; expected"
            f" {sum(expected.values())} characters, found {found_chars}"
        )
    return [(a, c, sorted(tree[a][c])) for a in sorted(tree) for c in sorted(tree[a])]


_OPEN_ZIPS: dict[str, zipfile.ZipFile] = {}  # per process, so each worker opens a zip once


def _read(path: str, name: str) -> bytes:
    if os.path.isdir(path):
        return (Path(path).parent / name).read_bytes()
    zf = _OPEN_ZIPS.get(path) or _OPEN_ZIPS.setdefault(path, zipfile.ZipFile(path))
    try:
        return zf.read(name)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as err:  # e.g. bad CRC-32
        raise OmniglotDataError(f"{path}: entry {name!r} is corrupt ({err})") from err


def _decode(data: bytes, where: str) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(data)) as im:
            size = im.size
            # Pillow ignores LANCZOS for mode "1" (it falls back to NEAREST, which is what MAML's
            # resize script effectively did), so go to greyscale first to really anti-alias.
            small = im.convert("L").resize((SIZE, SIZE), Image.Resampling.LANCZOS)
    except (OSError, SyntaxError, ValueError) as err:  # UnidentifiedImageError is an OSError
        raise OmniglotDataError(f"{where}: not a readable PNG ({err})") from err
    if size != (105, 105):
        raise OmniglotDataError(f"{where}: image is {size[0]}x{size[1]}, expected 105x105")
    return 255 - np.asarray(small, dtype=np.uint8)  # strokes are black in the PNGs: ink -> 255


def _decode_job(job: tuple[str, list[list[str]]]) -> np.ndarray:
    path, characters = job
    out = np.empty((len(characters), DRAWINGS, SIZE, SIZE), np.uint8)
    for i, names in enumerate(characters):
        for j, name in enumerate(names):
            out[i, j] = _decode(_read(path, name), f"{Path(path).name}: {name}")
    return out


def _close_zips() -> None:
    for zf in _OPEN_ZIPS.values():
        zf.close()
    _OPEN_ZIPS.clear()


def _decode_all(
    jobs: list[tuple[str, list[list[str]]]], progress: bool, workers: int
) -> np.ndarray:
    """Decode all jobs in order; ``workers`` forked processes when > 1 (about 1.6x on 2 CPUs)."""
    with contextlib.ExitStack() as stack:
        bar = stack.enter_context(
            tqdm(total=NUM_CLASSES, unit="char", desc="Omniglot to 28x28", disable=not progress)
        )
        if workers > 1:
            # fork, not spawn: a spawned worker would re-import torch, costing more than it saves.
            pool = stack.enter_context(multiprocessing.get_context("fork").Pool(workers))
            results = pool.imap(_decode_job, jobs)
        else:
            stack.callback(_close_zips)
            results = map(_decode_job, jobs)
        out = []
        for arr in results:
            out.append(arr)
            bar.update(len(arr))
    return np.concatenate(out)


def _digest(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for key in ("images", "background", "alphabets", "characters"):
        h.update(np.ascontiguousarray(arrays[key]).tobytes())
    return h.hexdigest()


def _to_arrays(arrays: dict[str, np.ndarray]) -> OmniglotArrays:
    return OmniglotArrays(
        torch.from_numpy(arrays["images"]),
        arrays["alphabets"].tolist(),
        arrays["characters"].tolist(),
        torch.from_numpy(arrays["background"]),
    )


def _fingerprint(sources: dict[str, Path]) -> dict[str, Any]:
    """Where the raw data came from: each part's resolved path, size and modification time."""
    out = {}
    for part, path in sorted(sources.items()):
        st = path.stat()
        size = st.st_size if path.is_file() else None
        out[part] = {"path": str(path.resolve()), "size": size, "mtime_ns": st.st_mtime_ns}
    return out


_UNREADABLE = object()


def _cached_source(path: Path) -> Any:
    """The source fingerprint stored in a cache file (None if it records none), or
    ``_UNREADABLE``: then the full load reports the damage instead of rebuilding over it."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            meta = json.loads(str(npz["meta"]))
        return meta.get("source") if isinstance(meta, dict) else _UNREADABLE
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error):
        return _UNREADABLE


def _save_cache(path: Path, arrays: dict[str, np.ndarray], source: Any = None) -> None:
    meta = {
        "format_version": FORMAT_VERSION,
        "source": source,
        "sha256": _digest(arrays),  # of images, background, alphabets, characters, in that order
        "order": "background then evaluation; alphabets, characters, drawings sorted by name",
        "pixels": "105x105 PNG -> greyscale -> PIL LANCZOS 28x28 -> 255 - value (ink high)",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, meta=np.array(json.dumps(meta)), **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a cache may be shared
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _load_cache(path: Path) -> OmniglotArrays:
    fix = f"delete {path} to rebuild it from the raw zips"
    try:
        with np.load(path, allow_pickle=False) as npz:
            meta: Any = json.loads(str(npz["meta"]))
            arrays = {k: npz[k] for k in ("images", "background", "alphabets", "characters")}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as err:
        raise OmniglotDataError(
            f"cache file {path} is unreadable or truncated ({err}); {fix}"
        ) from err
    version = meta.get("format_version") if isinstance(meta, dict) else None
    images, background = arrays["images"], arrays["background"]
    if version != FORMAT_VERSION:
        problem = f"format version {version!r}, expected {FORMAT_VERSION}"
    elif images.dtype != np.uint8 or images.shape != (NUM_CLASSES, DRAWINGS, SIZE, SIZE):
        problem = f"images are {images.dtype} {images.shape}, expected uint8 [1623, 20, 28, 28]"
    elif background.dtype != bool or any(a.shape[:1] != (NUM_CLASSES,) for a in arrays.values()):
        problem = "per-class arrays have the wrong length or dtype"
    elif _digest(arrays) != meta.get("sha256"):
        problem = "sha256 mismatch, the file was modified or corrupted"
    else:
        return _to_arrays(arrays)
    raise OmniglotDataError(f"cache file {path} failed verification: {problem}; {fix}")


def _locate(root: Path | None, folder: Path, download: bool, progress: bool) -> dict[str, Path]:
    """Raw source of each part: the user's root, else earlier downloads, else a new download."""
    if root is not None:
        found = _find_parts(root)
        missing = [f"{p}.zip (or an unpacked {p}/ folder)" for p in PARTS if p not in found]
        if missing:
            raise FileNotFoundError(f"Omniglot root {root} has no {' and no '.join(missing)}")
        return found
    found = _find_parts(folder)
    if len(found) == len(PARTS):
        return found
    if not download:
        raise OmniglotDataError(f"Omniglot data not found.\n{_how_to_get(folder)}")
    fetch_omniglot(folder, progress=progress)
    return _find_parts(folder)


def load_omniglot(
    root: str | Path | None = None,
    cache_dir: str | Path | None = None,
    download: bool = False,
    progress: bool = True,
    *,
    workers: int | None = None,
) -> OmniglotArrays:
    """All of Omniglot as 28x28 uint8 arrays, preprocessed once and then read from the cache.

    ``root``: folder with the two zips or unpacked folders (default: env ``MAMLVIZ_OMNIGLOT``).
    ``cache_dir``: mamlviz cache root; Omniglot files live in ``<cache_dir>/omniglot/``.
    ``download``: fetch the official zips if no local copy is found. ``workers``: decoding
    processes for the one-time preprocessing (default 2 on Linux, 1 elsewhere).
    """
    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    folder = folder / "omniglot"
    root_path = Path(root).expanduser() if root is not None else default_omniglot_root()
    if root_path is not None and not root_path.is_dir():
        raise FileNotFoundError(f"Omniglot root {root_path} is not a folder")
    cache = folder / CACHE_NAME
    if root_path is None:
        if cache.exists():
            return _load_cache(cache)
        sources = _locate(root_path, folder, download, progress)
    else:  # an explicit folder wins: the cache serves it only if it was made from it
        sources = _locate(root_path, folder, download, progress)
        stored = _cached_source(cache) if cache.exists() else None
        if stored is _UNREADABLE or (stored is not None and stored == _fingerprint(sources)):
            return _load_cache(cache)  # verified; a damaged cache is reported, not rebuilt
    classes = [(p, *entry) for p in PARTS for entry in _index(sources[p], p)]
    # Jobs of up to 32 characters of one part: small enough for a smooth progress bar.
    jobs = []
    for p in PARTS:
        names = [n for q, _, _, n in classes if q == p]
        jobs += [(str(sources[p]), names[i : i + 32]) for i in range(0, len(names), 32)]
    if workers is None:
        workers = min(2, os.cpu_count() or 1) if sys.platform == "linux" else 1
    arrays = {
        "images": _decode_all(jobs, progress, workers),
        "background": np.array([p == PARTS[0] for p, *_ in classes]),
        "alphabets": np.array([a for _, a, _, _ in classes]),
        "characters": np.array([c for _, _, c, _ in classes]),
    }
    try:
        _save_cache(cache, arrays, _fingerprint(sources))
    except OSError as err:  # e.g. a read-only home: still usable, just not cached
        warnings.warn(f"could not write the Omniglot cache {cache}: {err}", stacklevel=2)
    return _to_arrays(arrays)
