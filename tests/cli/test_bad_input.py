"""Bad input through the command line and the public API: every case gets a clear error.

For each case: a non-zero exit (or an exception of our error type), a message that names the
argument or the path, no traceback, and nothing written to the output path. The table the
closing note quotes is printed by ``test_summary`` (run with ``-s``).
"""

from __future__ import annotations

import math
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import mamlviz
from mamlviz.cli import main
from mamlviz.errors import MamlvizError, check_range

TINY = ["--iterations", "3", "--meta-batch", "2", "--quiet"]
RESULTS: dict[str, str] = {}

# (id, argv after the command, regex the one-line message must match, expected exit code)
TRAIN = [
    ("inner-lr-negative", ["--inner-lr", "-0.5"], r"inner_lr must be in \[0", 2),
    ("inner-lr-nan", ["--inner-lr", "nan"], r"inner_lr must be a finite number", 2),
    ("inner-lr-inf", ["--inner-lr", "inf"], r"inner_lr must be a finite number", 2),
    ("outer-lr-zero", ["--outer-lr", "0"], r"outer_lr must be in \(0", 2),
    ("outer-lr-negative-exponent", ["--outer-lr", "-1e-3"], r"outer_lr must be in \(0", 2),
    ("inner-steps-negative", ["--inner-steps", "-1"], r"inner_steps must be in \[0", 2),
    ("maml-zero-steps", ["--inner-steps", "0"], r"inner_steps must be in \[1.*pretrained", 2),
    ("shots-zero", ["--shots", "0"], r"shots must be in \[1", 2),
    ("query-shots-zero", ["--query-shots", "0"], r"query_shots must be in \[1", 2),
    ("meta-batch-zero", ["--meta-batch", "0"], r"meta_batch must be in \[1", 2),
    ("iterations-zero", ["--iterations", "0"], r"iterations must be in \[1", 2),
    ("seed-negative", ["--seed", "-1"], r"seed must be in \[0", 2),
    ("checkpoint-every-zero", ["--checkpoint-every", "0"], r"checkpoint_every must be in", 2),
    ("snapshot-every-zero", ["--snapshot-every", "0"], r"snapshot_every must be in", 2),
    ("algorithm-misspelt", ["--algorithm", "mamal"], r"algorithm must be one of: .*maml", 2),
    ("problem-misspelt", ["--problem", "sinusiod"], r"problem must be one of: .*sinusoid", 2),
    (
        "option-misspelt",
        ["--algorithm", "imaml", "--option", "lamda=10"],
        r"unknown option 'lamda' for imaml \(did you mean 'lam'\?\)",
        2,
    ),
    ("option-unknown-maml", ["--option", "lam=3"], r"unknown option 'lam' for maml", 2),
    (
        "inner-optimizer",
        ["--algorithm", "reptile", "--option", "inner_optimizer=rmsprop"],
        r"inner_optimizer must be 'sgd' or 'adam'",
        2,
    ),
    ("noise", ["--algorithm", "metadropout", "--option", "noise=loud"], r"noise must be", 2),
    (
        "indefinite",
        ["--algorithm", "imaml", "--option", "indefinite=ignore"],
        r"indefinite must be one of \('refuse', 'skip'\)",
        2,
    ),
    ("samples", ["--algorithm", "metadropout", "--option", "samples=0"], r"samples must be", 2),
    ("lam-zero", ["--algorithm", "imaml", "--option", "lam=0"], r"lam must be in \(0", 2),
    ("cg-steps", ["--algorithm", "imaml", "--option", "cg_steps=0"], r"cg_steps must be", 2),
    ("damping", ["--algorithm", "imaml", "--option", "damping=-1"], r"damping must be in", 2),
    ("solver", ["--algorithm", "imaml", "--option", "solver=lu"], r"solver must be one of", 2),
    ("max-norm", ["--algorithm", "imaml", "--option", "max_norm=0"], r"max_norm", 2),
    ("inner-batch", ["--option", "inner_batch=0"], r"inner_batch must be in \[1", 2),
    ("option-no-equals", ["--option", "nokey"], r"--option must look like key=value", 2),
    ("option-no-key", ["--option", "=3"], r"--option must look like key=value", 2),
    ("dtype", ["--dtype", "float16"], r"dtype must be one of", 2),
    ("threads", ["--threads", "0"], r"--threads must be in \[1", 2),
    ("init-missing", ["--init", "no-such-checkpoint"], r"checkpoint must be a shipped name", 2),
    ("inner-lr-huge", ["--inner-lr", "1e308"], r"diverged: loss is .* lower inner_lr", 2),
    (
        "inner-steps-huge",
        ["--inner-steps", "100000000"],
        r"inner_steps 100000000 would need about .* GiB .* MiB per inner step",
        2,
    ),
    ("iterations-not-int", ["--iterations", "2.5"], r"--iterations: invalid int value", 2),
    ("shots-not-number", ["--shots", "abc"], r"--shots: invalid int value", 2),
    ("unknown-flag", ["--lr", "0.1"], r"unrecognized arguments: --lr", 2),
]
EVALUATE = [
    ("missing", ["no-such-checkpoint"], r"checkpoint must be a shipped name", 2),
    ("shots-zero", ["sinusoid-maml", "--shots", "0"], r"shots must be in \[1", 2),
    ("tasks-zero", ["sinusoid-maml", "--tasks", "0"], r"tasks must be in \[1", 2),
    ("steps-negative", ["sinusoid-maml", "--steps", "-1"], r"steps must be in \[0", 2),
    ("inner-lr-negative", ["sinusoid-maml", "--inner-lr", "-1"], r"inner_lr must be in", 2),
    ("seed-negative", ["sinusoid-maml", "--seed", "-5"], r"seed must be in \[0", 2),
    ("inner-batch-zero", ["sinusoid-maml", "--inner-batch", "0"], r"inner_batch must be in", 2),
    ("threads", ["sinusoid-maml", "--threads", "0"], r"--threads must be in \[1", 2),
    (
        "metasgd-inner-lr",
        ["sinusoid-metasgd-5shot", "--inner-lr", "0.01"],
        r"--inner-lr does not apply to metasgd",
        2,
    ),
    (
        "option-misspelt",
        ["sinusoid-imaml-10shot", "--option", "lamda=3"],
        r"unknown option 'lamda' for imaml",
        2,
    ),
    ("samples", ["sinusoid-metadropout-10shot", "--option", "samples=0"], r"samples must be", 2),
    ("write-with-option", ["sinusoid-maml", "--write", "--option", "x=1"], r"--write", 2),
    (
        "diverged",
        ["sinusoid-maml", "--inner-lr", "1e6", "--tasks", "20", "--steps", "2"],
        r"diverged on 20 of 20 tasks .*lower --inner-lr",
        2,
    ),
]
OTHER = [
    ("export-missing", ["export", "no-such.pt", "--out", "OUT"], r"no-such.pt: no such file", 2),
    ("bench-unknown", ["bench", "--suite", "nosuch"], r"--suite must be one of", 2),
    ("bench-path", ["bench", "--suite", "../etc"], r"--suite must be a module name", 2),
    ("no-command", [], r"the following arguments are required: command", 2),
]


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """``main(argv)`` as a user runs it: the exit code and stderr (argparse exits via
    SystemExit; anything else escaping ``main`` is a traceback and fails the test)."""
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    return code, capsys.readouterr().err


def check(key: str, code: int, err: str, want: int, message: str, out: Path | None) -> None:
    assert "Traceback" not in err, err
    assert code == want, (code, err)
    assert re.search(message, err), err
    if out is not None:
        assert not out.exists(), f"{out} was written"
    RESULTS[key] = "clear error"


@pytest.mark.parametrize(("key", "args", "message", "code"), TRAIN, ids=[c[0] for c in TRAIN])
def test_train_bad_input(key, args, message, code, tmp_path, capsys) -> None:
    out = tmp_path / "run.pt"
    got, err = run(["train", *TINY, *args, "--out", str(out)], capsys)
    if key == "inner-lr-huge":
        out = None  # the error comes from training itself: nothing finite was ever saved
    check(f"train {key}", got, err, code, message, out)


def test_our_warnings_are_one_line(capsys) -> None:
    """An iMAML meta-batch with skipped tasks warns as ``mamlviz train: warning: ...``, one line;
    other warnings keep Python's own format."""
    import warnings

    from mamlviz.cli import _one_line
    from mamlviz.errors import IndefiniteWarning

    others: list = []
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = _one_line("mamlviz train", lambda *a: others.append(a))
        warnings.warn(IndefiniteWarning(1, 32, -0.25), stacklevel=1)
        warnings.warn("something else", UserWarning, stacklevel=1)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    assert lines[0] == (
        "mamlviz train: warning: implicit gradient: skipped 1 of 32 tasks whose (1 + damping) I"
        " + H / lam is not positive definite (smallest curvature seen -0.25 <= 0); the"
        " meta-gradient is the mean over the other tasks"
    )
    assert [(str(a[0]), a[1]) for a in others] == [("something else", UserWarning)]


@pytest.mark.parametrize(("key", "args", "message", "code"), EVALUATE, ids=[c[0] for c in EVALUATE])
def test_evaluate_bad_input(key, args, message, code, capsys) -> None:
    before = {p: p.stat().st_mtime_ns for p in mamlviz.training.hub.SHIPPED.glob("*.pt")}
    got, err = run(["evaluate", *args, "--quiet"], capsys)
    check(f"evaluate {key}", got, err, code, message, None)
    after = {p: p.stat().st_mtime_ns for p in mamlviz.training.hub.SHIPPED.glob("*.pt")}
    assert before == after  # no shipped checkpoint was rewritten


@pytest.mark.parametrize(("key", "args", "message", "code"), OTHER, ids=[c[0] for c in OTHER])
def test_other_commands_bad_input(key, args, message, code, tmp_path, capsys) -> None:
    out = tmp_path / "out.pt"
    got, err = run([a.replace("OUT", str(out)) for a in args], capsys)
    check(key, got, err, code, message, out)


def test_output_paths(tmp_path, capsys) -> None:
    existing = tmp_path / "done.pt"
    existing.write_bytes(b"x")
    got, err = run(["train", *TINY, "--out", str(existing)], capsys)
    check("train --out exists", got, err, 2, r"--out .*done.pt exists: pass --resume", None)
    got, err = run(["train", *TINY, "--out", str(tmp_path)], capsys)
    check("train --out is a folder", got, err, 2, r"is a folder: name a file", None)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    got, err = run(["train", *TINY, "--out", str(blocker / "run.pt")], capsys)
    check("train --out under a file", got, err, 1, re.escape(str(blocker)), blocker / "run.pt")
    got, err = run(["export", "sinusoid-maml", "--out", str(tmp_path)], capsys)
    check("export --out is a folder", got, err, 2, r"is a folder", None)


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "empty"), (b"some text\n", "not a mamlviz checkpoint"), (bytes(range(256)), "not a")],
    ids=["empty", "text", "random"],
)
def test_evaluate_files_that_are_not_checkpoints(content, message, tmp_path, capsys) -> None:
    path = tmp_path / "x.pt"
    path.write_bytes(content)
    got, err = run(["evaluate", str(path), "--quiet"], capsys)
    check(f"evaluate {message} file", got, err, 2, message, None)
    assert "weights_only" not in err


def test_omniglot_data_errors(tmp_path, capsys, monkeypatch) -> None:
    from mamlviz.training import omniglot_problem

    monkeypatch.setenv("MAMLVIZ_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("MAMLVIZ_OMNIGLOT", str(tmp_path / "missing"))
    omniglot_problem.omniglot_tasks.cache_clear()
    out = tmp_path / "o.pt"
    got, err = run(["train", "--problem", "omniglot", *TINY, "--out", str(out)], capsys)
    check("omniglot folder missing", got, err, 1, r"Omniglot root .*missing is not a folder", out)
    bad = tmp_path / "bad"
    bad.mkdir()
    for part in ("images_background", "images_evaluation"):
        (bad / f"{part}.zip").write_bytes(b"PK not really a zip")
    monkeypatch.setenv("MAMLVIZ_OMNIGLOT", str(bad))
    omniglot_problem.omniglot_tasks.cache_clear()
    got, err = run(["train", "--problem", "omniglot", *TINY, "--out", str(out)], capsys)
    check("omniglot corrupt zip", got, err, 2, r"images_background\.zip", out)
    omniglot_problem.omniglot_tasks.cache_clear()
    assert zipfile.is_zipfile(bad / "images_background.zip") is False


# ---------------------------------------------------------------- the public API

MODEL = mamlviz.sinusoid_mlp()


def learner(algorithm: str = "maml", loss: str = "mse", **kwargs) -> mamlviz.Learner:
    settings = {"inner_lr": 0.1, "inner_steps": 1, **kwargs}
    return mamlviz.make_learner(algorithm, MODEL, loss, **settings)


API = [
    ("inner_lr", lambda: learner(inner_lr=-1)),
    ("inner_steps", lambda: learner(inner_steps=1.5)),
    ("algorithm", lambda: learner("mamal")),
    ("lamda", lambda: learner("imaml", lamda=3)),
    ("loss", lambda: learner(loss="hinge")),
    ("SGD inner_lr", lambda: mamlviz.SGD(-0.1)),
    ("dtype", lambda: mamlviz.TrainConfig(dtype="float16")),
    ("shots", lambda: mamlviz.SinusoidTasks().sample(torch.Generator(), 0, 1, 1)),
    ("meta_batch", lambda: mamlviz.SinusoidTasks().sample(torch.Generator(), 1, 1, 0)),
    ("episode", lambda: mamlviz.meta_gradient(
        learner(),
        mamlviz.params_of(MODEL),
        mamlviz.SinusoidTasks().sample(torch.Generator(), 5, 5, 1).task(0),
    )),
    ("support", lambda: mamlviz.adapt(
        mamlviz.make_loss(MODEL, "mse"), mamlviz.params_of(MODEL),
        mamlviz.Examples(torch.zeros(0, 1), torch.zeros(0, 1)), mamlviz.SGD(0.1), 1,
    )),
    ("checkpoint", lambda: mamlviz.load("no-such-checkpoint")),
    ("float64 but the meta-parameters", lambda: mamlviz.meta_gradient(
        learner(), mamlviz.params_of(MODEL),
        mamlviz.SinusoidTasks().sample(torch.Generator(), 5, 5, 2, torch.float64),
    )),
    ("does not fit the model", lambda: mamlviz.meta_gradient(
        learner(), mamlviz.params_of(MODEL),
        mamlviz.Episode(*(mamlviz.Examples(torch.rand(2, 5, 3), torch.rand(2, 5, 1)),) * 2),
    )),
    ("problem", lambda: mamlviz.get_problem("sinusiod")),
]  # fmt: skip


@pytest.mark.parametrize(("name", "call"), API, ids=[c[0] for c in API])
def test_api_bad_input(name: str, call) -> None:
    with pytest.raises((ValueError, MamlvizError)) as err:
        call()
    assert (name if " " in name and "SGD" not in name else name.split()[-1]) in str(err.value)
    RESULTS[f"api {name}"] = "clear error"


def test_numpy_scalars_are_numbers() -> None:
    learner = mamlviz.make_learner(
        "maml", MODEL, "mse", inner_lr=np.float32(0.01), inner_steps=np.int64(2)
    )
    assert learner.inner_steps == 2


@given(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(), st.text()))
def test_check_range_accepts_exactly_the_finite_numbers_in_range(value) -> None:
    """Property: [0, 1] admits a value iff it is a finite real in [0, 1]; else a ValueError
    that names the argument and the range."""
    ok = isinstance(value, int | float) and math.isfinite(value) and 0 <= value <= 1
    if ok:
        check_range("alpha", value, 0.0, 1.0)
    else:
        with pytest.raises(ValueError, match=r"alpha must be .*\[0, 1\], got"):
            check_range("alpha", value, 0.0, 1.0)


@given(st.text(min_size=1, max_size=12))
def test_unknown_algorithm_names_are_refused_by_name(name: str) -> None:
    if name in mamlviz.ALGORITHMS:
        return
    with pytest.raises(ValueError, match=r"algorithm must be one of: .*got"):
        mamlviz.get_algorithm(name)


def test_summary() -> None:
    """At least 60 bad inputs, every one a clear error (the table of the closing note)."""
    cli = len(TRAIN) + len(EVALUATE) + len(OTHER) + 4 + 3 + 2
    total = cli + len(API)
    print(f"\nbad inputs: {total} ({cli} CLI, {len(API)} API); clear errors {len(RESULTS)}")
    assert total >= 60  # (each case asserts its own clear error; RESULTS counts those run)
