"""The command line keeps large freed blocks for reuse (mamlviz.memory).

Each check runs in a fresh interpreter: the setting is process-wide, and pytest's own process
must keep malloc's default behaviour.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")

# Allocate, touch and free a 120 MB tensor (the stacked path's layer-1 activations at 15 query
# images) six times; report the state and the minor faults of the last three rounds (the heap
# settles in the first rounds: glibc may place the first blocks elsewhere before reusing one).
PROBE = """
import json, sys, torch
from mamlviz import memory
state = memory.reuse_freed_memory() if sys.argv[1] == "cli" else memory.state
faults = []
for _ in range(6):
    start = memory.minor_faults()
    x = torch.empty(30_000_000).fill_(1.0)
    del x
    faults.append(memory.minor_faults() - start)
print(json.dumps({"state": state, "faults": faults[3:]}))
"""

PAGES = 120_000_000 // 4096  # faults for touching the block's pages anew


def probe(mode: str, malloc: str | None = None) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if k != "MAMLVIZ_MALLOC"}
    if malloc is not None:
        env["MAMLVIZ_MALLOC"] = malloc
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)


def test_the_cli_setting_reuses_a_freed_120_mb_block_without_faulting_it_in_again() -> None:
    result = probe("cli")
    assert result["state"] == "reuse"
    assert max(result["faults"]) < PAGES // 20, result  # the same pages, already mapped


def test_without_it_every_round_faults_the_block_in_afresh() -> None:
    # the cost the setting removes; if malloc ever recycled such blocks by itself, this fails
    # and the setting (and the README's account of it) should go
    result = probe("import")
    assert result["state"] == "default"
    assert min(result["faults"]) > PAGES * 0.9, result


def test_mamlviz_malloc_default_leaves_malloc_alone() -> None:
    result = probe("cli", malloc="default")
    assert result["state"] == "default"
    assert min(result["faults"]) > PAGES * 0.9, result


def test_a_bad_mamlviz_malloc_is_one_line_naming_the_allowed_values() -> None:
    env = {**os.environ, "MAMLVIZ_MALLOC": "bogus"}
    out = subprocess.run(
        [sys.executable, "-m", "mamlviz", "data", "--help"], env=env, capture_output=True, text=True
    )
    assert out.returncode == 2
    assert out.stderr.strip() == (
        "mamlviz: error: MAMLVIZ_MALLOC must be one of reuse, default, got 'bogus'"
    )
