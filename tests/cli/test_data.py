"""``python -m mamlviz data``: the one download path (README, the workflow, learners) fetches
exactly the missing zips, refuses a wrong MD5 leaving nothing behind, and reads what it got."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from mamlviz.cli import main
from mamlviz.tasks import omniglot_data as od


@pytest.fixture
def upstream(omniglot_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The shared zips served as file:// URLs with their own MD5s, and a private cache."""
    for part in od.PARTS:
        zip_path = omniglot_dir / f"{part}.zip"
        monkeypatch.setitem(od.URLS, part, zip_path.as_uri())
        monkeypatch.setitem(od.MD5, part, hashlib.md5(zip_path.read_bytes()).hexdigest())
    monkeypatch.setenv(od.ENV_CACHE, str(tmp_path / "cache"))
    monkeypatch.delenv(od.ENV_ROOT, raising=False)
    return omniglot_dir


def test_download_fetches_the_missing_zips_and_reads_every_drawing(
    upstream: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    folder = tmp_path / "omniglot"
    folder.mkdir()
    (folder / "images_background.zip").write_bytes(
        (upstream / "images_background.zip").read_bytes()
    )
    assert main(["data", "--download", "--dir", str(folder), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "images_background: present" in out  # kept, not fetched again
    assert f"images_evaluation: downloaded, MD5 {od.MD5['images_evaluation']} ok" in out
    assert "1623 characters (964 background, 659 evaluation) x 20 drawings" in out
    for part in od.PARTS:
        assert (folder / f"{part}.zip").read_bytes() == (upstream / f"{part}.zip").read_bytes()
    assert sorted(p.name for p in folder.iterdir()) == [f"{p}.zip" for p in od.PARTS]
    # Both present now: a second run downloads nothing, even with the upstream unreachable.
    for part in od.PARTS:
        monkeypatch.setitem(od.URLS, part, (tmp_path / "gone.zip").as_uri())
    assert main(["data", "--download", "--dir", str(folder), "--quiet"]) == 0
    assert capsys.readouterr().out.count(": present") == 2


def test_a_wrong_md5_fails_and_leaves_no_file(
    upstream: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    monkeypatch.setitem(od.MD5, "images_background", "0" * 32)
    folder = tmp_path / "omniglot"
    assert main(["data", "--download", "--dir", str(folder), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mamlviz data: error: images_background.zip downloaded from")
    assert f"expected {'0' * 32}" in err and od.URLS["images_evaluation"] in err
    assert list(folder.iterdir()) == []


def test_a_missing_folder_without_download_says_what_to_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["data", "--dir", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert "--dir" in err and "is not a folder" in err and "--download" in err
    assert "Traceback" not in err
