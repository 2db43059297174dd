"""keep_freed_memory (soundstorm/allocator.py): freed tensors' pages stay with the process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from soundstorm import allocator, cli

# Three 10 MB tensors made, touched and freed together, as a pass's activations are. Under
# glibc's own thresholds this pattern faulted all their pages in again at almost every
# iteration (4,851 faults of 4,882 pages for two tensors, in 6 runs of 8 here).
PATTERN = textwrap.dedent("""
    import json, resource, sys, torch
    from soundstorm.allocator import keep_freed_memory
    kept = keep_freed_memory()
    faults = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    def step():
        tensors = [torch.ones(2_500_000) for _ in range(3)]
        del tensors
    for _ in range(3):
        step()
    before = faults()
    for _ in range(20):
        step()
    print(json.dumps({"kept": kept, "faults": faults() - before}))
""")
PAGES_PER_STEP = 3 * 2_500_000 * 4 // 4096


def run_pattern(**env: str) -> dict:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != allocator.OPT_OUT}
    result = subprocess.run([sys.executable, "-c", PATTERN], env={**environment, **env},
                            capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(allocator.glibc_version() is None, reason="glibc's malloc only")
def test_kept_memory_is_not_faulted_in_again_pass_after_pass() -> None:
    result = run_pattern()
    assert result["kept"] is True
    # 20 steps that each faulted their pages in again would take 20 x 7,324; growing the heap
    # once inside the window may take one step's worth.
    assert result["faults"] < 2 * PAGES_PER_STEP, result


def test_opting_out_and_glibc_variables_leave_malloc_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(allocator.OPT_OUT, "default")
    assert allocator.keep_freed_memory() is False
    monkeypatch.delenv(allocator.OPT_OUT)
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "131072")
    assert allocator.keep_freed_memory() is False
    if allocator.glibc_version() is not None:
        assert run_pattern(SOUNDSTORM_MALLOC="default")["kept"] is False


def test_other_c_libraries_are_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(allocator.OPT_OUT, raising=False)

    def no_glibc(name: str) -> str:
        raise ValueError(name)  # what os.confstr raises where the name is unknown (musl, macOS)

    monkeypatch.setattr(allocator.os, "confstr", no_glibc)
    assert allocator.glibc_version() is None
    assert allocator.keep_freed_memory() is False


def test_the_command_keeps_freed_memory_before_its_subcommand_runs(monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    calls: list[str] = []
    monkeypatch.setattr(cli, "keep_freed_memory", lambda: calls.append("kept") or True)
    assert cli.main(["presets"]) == 0
    assert calls == ["kept"]
    assert "small" in capsys.readouterr().out
