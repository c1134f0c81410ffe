"""The command line: training, resume after a real SIGKILL, evaluation, and exit code 2 with a
one-line message for bad arguments."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mamlviz import TrainConfig, fit
from mamlviz.cli import main
from mamlviz.models import MLP
from mamlviz.training import checkpoint as ckpt

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--iterations", "6", "--meta-batch", "2", "--checkpoint-every", "3", "--quiet"]


def cli(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "mamlviz", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "maml.pt"
    assert main(["train", "--out", str(out), *TINY]) == 0
    return out


def test_train_writes_the_config_and_command(trained: Path) -> None:
    meta = ckpt.load(trained).metadata
    assert (
        meta["config"]
        == TrainConfig.for_problem(
            "sinusoid", "maml", iterations=6, meta_batch=2, checkpoint_every=3
        ).to_dict()
    )
    assert meta["command"].startswith("python -m mamlviz ") and "--iterations 6" in meta["command"]
    assert meta["hardware"]["threads"] == 1  # --threads defaults to 1


@pytest.mark.slow
def test_killed_training_resumes_to_the_same_weights(tmp_path) -> None:
    """SIGKILL a real training process after its first checkpoint, resume it, and compare with an
    uninterrupted run of the same config: the weights are identical."""
    out = tmp_path / "run.pt"
    args = ["train", "--iterations", "1000", "--meta-batch", "4", "--checkpoint-every", "10"]
    proc = cli(*args, "--out", str(out), "--quiet")
    deadline = time.monotonic() + 120
    while not out.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = ckpt.load(out).metadata["iteration"]
    assert proc.returncode == -signal.SIGKILL and 10 <= killed_at < 1000
    assert [p.name for p in tmp_path.iterdir()] == ["run.pt"]  # no partial temp file
    # Resuming needs --resume; without it the existing file is protected.
    refused = cli(*args, "--out", str(out))
    assert refused.wait() == 2 and "pass --resume" in refused.stderr.read()
    resumed = cli(*args, "--out", str(out), "--resume", "--quiet")
    assert resumed.wait() == 0, resumed.stderr.read()
    config = TrainConfig.for_problem(
        "sinusoid", "maml", iterations=1000, meta_batch=4, checkpoint_every=10
    )
    expected, _ = fit(config, progress=False)
    got = ckpt.load(out).tensors["meta"]
    assert all(torch.equal(got[n], expected[n]) for n in expected)


@pytest.mark.slow
def test_ctrl_c_says_what_was_saved_and_resume_equals_an_uninterrupted_run(tmp_path) -> None:
    """SIGINT (Ctrl-C) a real training process after a checkpoint: exit 130, one line naming
    the iteration and the intact checkpoint, no traceback; --resume then ends with exactly the
    weights of an uninterrupted run, and re-running the finished command trains nothing."""
    out = tmp_path / "run.pt"
    # 3,000 iterations (a few seconds) so that a loaded machine cannot finish the run between
    # the first checkpoint and the signal
    args = ["train", "--iterations", "3000", "--meta-batch", "4", "--checkpoint-every", "100"]
    proc = cli(*args, "--out", str(out), "--quiet")
    deadline = time.monotonic() + 120
    while not out.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    saved = ckpt.load(out).metadata["iteration"]
    assert proc.returncode == 130 and "Traceback" not in err, err
    pattern = rf"mamlviz train: interrupted at iteration (\d+); the checkpoint at {out} \(iteration"
    match = re.search(pattern + rf" {saved}\) is intact; continue with --resume", err)
    assert match and int(match.group(1)) >= saved >= 10, err
    resumed = cli(*args, "--out", str(out), "--resume", "--quiet")
    assert resumed.wait() == 0, resumed.stderr.read()
    config = TrainConfig.for_problem(
        "sinusoid", "maml", iterations=3000, meta_batch=4, checkpoint_every=100
    )
    expected, _ = fit(config, progress=False)
    got = ckpt.load(out).tensors["meta"]
    assert all(torch.equal(got[n], expected[n]) for n in expected)
    again = cli(*args, "--out", str(out), "--resume", "--quiet")
    assert again.wait() == 0 and "already complete" in again.stdout.read()


def test_evaluate_json_and_write(trained: Path, capsys) -> None:
    assert (
        main(["evaluate", str(trained), "--tasks", "20", "--steps", "2", "--json", "--quiet"]) == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert len(result["mean"]) == 3 and result["tasks"] == 20 and result["shots"] == 5
    assert "evaluation" not in ckpt.load(trained).metadata
    assert (
        main(["evaluate", str(trained), "--tasks", "20", "--steps", "2", "--write", "--quiet"]) == 0
    )
    assert ckpt.load(trained).metadata["evaluation"] == result


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--inner-lr", "-0.5"], r"inner_lr must be in \[0, inf\), got -0.5"),
        (["--inner-lr", "nan"], r"inner_lr must be a finite number in \[0, inf\), got nan"),
        (["--outer-lr", "-1"], r"outer_lr must be in \(0, inf\), got -1.0"),
        (["--outer-lr", "inf"], r"outer_lr must be a finite number in \(0, inf\), got inf"),
        (["--inner-steps", "-2"], r"inner_steps must be in \[0, inf\), got -2"),
        (["--shots", "0"], r"shots must be in \[1, inf\), got 0"),
        (["--algorithm", "mamal"], r"algorithm must be one of: .*fomaml.*maml.*; got 'mamal'"),
        (["--option", "inner_optimizer"], r"--option must look like key=value"),
        (["--threads", "0"], r"--threads must be in \[1, inf\), got 0"),
        (["--preset", "fast"], r"preset must be one of this problem's \(sinusoid\): live; got"),
        (["--preset", "live", "--algorithm", "fomaml"], r"differs from preset live's maml"),
        (["--outer-schedule", "step"], r"outer_schedule must be one of \('constant', 'cosine'\)"),
        (["--device", "tpu"], r"device must be one of \('auto', 'cpu', 'cuda'\), got 'tpu'"),
        (
            ["--problem", "sinusoid", "--algorithm", "metadropout", "--compile"],
            r"compile must be False for 'metadropout' .*algorithms that compile: .*maml",
        ),
    ],
)
def test_train_bad_arguments_exit_2(args: list[str], message: str, tmp_path, capsys) -> None:
    code = main(["train", "--out", str(tmp_path / "x.pt"), *args])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("mamlviz train: error: ") and err.count("\n") == 1
    assert re.search(message, err), err
    assert not (tmp_path / "x.pt").exists()


def corrupt_variants(trained: Path, tmp_path: Path) -> dict[str, tuple[Path, str]]:
    data = trained.read_bytes()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(data[: len(data) // 3])
    flipped = tmp_path / "flipped.pt"
    weights = ckpt.load(trained).tensors["meta"]["fc2.weight"].numpy().tobytes()
    at = data.find(weights) + 40
    flipped.write_bytes(data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :])
    wide = tmp_path / "wide.pt"
    loaded = ckpt.load(trained)
    params = {n: p.detach() for n, p in MLP(hidden=(64, 64)).named_parameters()}
    ckpt.save(wide, loaded.metadata, {**loaded.tensors, "meta": params})
    return {
        "truncated": (truncated, "truncated or corrupt"),
        "flipped": (flipped, "sha256 stored at save"),
        "shape": (wide, r"param fc1.weight has shape \[64, 1\] in the checkpoint but \[40, 1\]"),
        "missing": (tmp_path / "nope.pt", "must be a shipped name"),
    }


@pytest.mark.parametrize("case", ["truncated", "flipped", "shape", "missing"])
def test_evaluate_bad_checkpoint_exit_2(case: str, trained: Path, tmp_path, capsys) -> None:
    path, message = corrupt_variants(trained, tmp_path)[case]
    code = main(["evaluate", str(path), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("mamlviz evaluate: error: ")
    assert str(path) in err and re.search(message, err), err


def test_bench_unknown_suite_and_list(capsys) -> None:
    assert main(["bench", "--suite", "nosuch"]) == 2
    assert re.search(
        r"--suite must be one of \[.*'sinusoid'.*\], got 'nosuch'", capsys.readouterr().err
    )
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "sinusoid" in out and "maml" in out and "shipped:" in out


def test_argparse_errors_exit_2(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["train"])  # --out is required
    assert exc.value.code == 2 and "--out" in capsys.readouterr().err


def test_help_and_list_come_from_the_registry(capsys) -> None:
    from mamlviz.algorithms import ALGORITHMS

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    for name, spec in ALGORITHMS.items():
        assert name in text and spec.title in text
        for key in spec.known_options():
            assert f"--option {key}=" in text, key
    assert "examples:" in text and "defaults (MAML's paper settings" in text
    from mamlviz.training.problems import get_problem

    for preset in get_problem("sinusoid").presets:  # the presets come from the registry too
        assert f"--preset {preset.name}: {preset.about}" in " ".join(text.split())
    assert main(["list", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert set(listing["algorithms"]) == set(ALGORITHMS)
    assert "lam" in listing["algorithms"]["imaml"]["options"]


def test_export_says_what_it_wrote(trained: Path, tmp_path, capsys) -> None:
    out = tmp_path / "small.pt"
    assert main(["export", str(trained), "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert re.search(rf"exported .* -> {out} \(\d+\.\d\d MiB: .*not resumable\)", said), said
    assert ckpt.load(out).metadata["shipped"]["resumable"] is False


# --- mer: online SGD, experience replay and MER on the continual bench's stream -------------

SHORT = ["--families", "2", "--examples-per-family", "5", "--test-examples", "4"]


def test_mer_help_lists_its_options_and_the_bench_settings(capsys) -> None:
    from mamlviz.benchmarks.continual import SETTINGS

    with pytest.raises(SystemExit) as exc:
        main(["mer", "--help"])
    text = capsys.readouterr().out
    assert exc.value.code == 0
    for flag in ("--method", "--lr", "--beta", "--gamma", "--batches", "--replay", "--memory",
                 "--seed", "--json", "--families", "--examples-per-family"):  # fmt: skip
        assert flag in text, flag
    for method, settings in SETTINGS["sinusoid"].items():
        line = f"{method:<7} " + ", ".join(f"{k} {v:g}" for k, v in settings.items())
        assert line in text, line
    assert "examples:" in text and "Riemer et al. 2019" in text


def test_mer_short_run_prints_the_metrics(capsys) -> None:
    assert main(["mer", "--method", "replay", *SHORT]) == 0
    text = capsys.readouterr().out
    for title in ("final loss:", "BWT:", "forgetting:", "learning loss:", "loss matrix"):
        assert title in text, title
    assert re.search(r"final loss:\s+\d+\.\d{3}", text)


def test_mer_json_is_the_continual_bench(capsys) -> None:
    """Defaults are the bench's settings on the bench's stream: one_run's numbers, exactly."""
    from mamlviz.benchmarks.continual import SETTINGS, one_run

    assert main(["mer", "--seed", "1", "--json", *SHORT]) == 0
    got = json.loads(capsys.readouterr().out)
    sizes = {"families": 2, "examples_per_family": 5, "test_examples": 4}
    ref = one_run("sinusoid", "mer", 1, sizes, SETTINGS["sinusoid"]["mer"])
    assert got["losses"] == ref["losses"]
    assert got["final_loss"] == ref["final_loss"] and got["bwt"] == ref["bwt"]
    assert got["settings"] == {**SETTINGS["sinusoid"]["mer"], "memory_size": 200}


def test_mer_with_unit_reptile_steps_and_no_memory_is_online_sgd(capsys) -> None:
    assert main(["mer", "--method", "online", "--lr", "0.02", "--json", *SHORT]) == 0
    online = json.loads(capsys.readouterr().out)
    args = ["--beta", "1", "--gamma", "1", "--batches", "1", "--memory", "0", "--lr", "0.02"]
    assert main(["mer", "--method", "mer", *args, "--json", *SHORT]) == 0
    assert json.loads(capsys.readouterr().out)["losses"] == online["losses"]


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["--beta", "2"], "--beta"),
        (["--gamma", "0"], "--gamma"),
        (["--lr", "-1"], "--lr"),
        (["--batches", "0"], "--batches"),
        (["--replay", "1.5"], "--replay"),
        (["--memory", "-3"], "--memory"),
        (["--method", "sgd"], "--method"),
        (["--seed", "-1"], "--seed"),
        (["--families", "1"], "--families"),
        (["--method", "online", "--beta", "0.5"], "--beta"),
        (["--method", "online", "--memory", "10"], "--memory"),
        (["--lr", "1e6"], "diverged"),
    ],
)
def test_mer_bad_values_exit_2_naming_the_argument(args, flag, capsys) -> None:
    try:
        code = main(["mer", *SHORT, *args])  # the last value of a flag wins
    except SystemExit as exc:  # argparse's own type errors (e.g. 1.5 for an integer)
        code = exc.code
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]  # argparse's type errors print the usage above it
    assert code == 2 and "mer: error:" in last and flag in last, err
    assert "Traceback" not in err


def test_mer_bad_value_in_a_real_process_has_no_traceback() -> None:
    proc = cli("mer", "--beta", "2", *SHORT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2
    assert err.strip() == "mamlviz mer: error: --beta must be in (0, 1], got 2.0"
