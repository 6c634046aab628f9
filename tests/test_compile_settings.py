"""The ``compile`` config key: what auto, true and false resolve to, and the errors and warnings
where torch.compile cannot run. (Compiled against eager updates: tests/test_compile.py.)"""

from __future__ import annotations

import pytest
import torch

import mtrl.compile
from mtrl.cli import main
from mtrl.compile import resolve_compile
from mtrl.config import ConfigError, load_config
from tests.conftest import SMOKE

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    """``mtrl ARGV``'s exit code and stderr."""
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err


def test_false_never_compiles_and_auto_on_the_cpu_is_the_measured_choice():
    assert resolve_compile("false", CPU) is False and resolve_compile("false", CUDA) is False
    assert resolve_compile("auto", CPU) is True  # measured faster: docs/benchmarks.md, "compile on and off"


def test_auto_on_cuda_compiles_or_says_in_one_line_why_not(monkeypatch):
    lines = []
    monkeypatch.setattr(mtrl.compile, "compile_unavailable", lambda device: None)
    assert resolve_compile("auto", CUDA, warn=lines.append) is True and lines == []
    monkeypatch.setattr(mtrl.compile, "compile_unavailable", lambda device: "Triton is not installed")
    assert resolve_compile("auto", CUDA, warn=lines.append) is False
    assert lines == ["mtrl: compile=auto: Triton is not installed; the update runs eagerly"]
    with pytest.raises(
        ConfigError, match="compile=true but Triton is not installed; use compile=auto or compile=false"
    ):
        resolve_compile("true", CUDA)


def test_no_cpu_compiler_is_found_and_named(monkeypatch):
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr(mtrl.compile.shutil, "which", lambda name: None)
    assert "no C++ compiler" in mtrl.compile.compile_unavailable(CPU)
    lines = []
    assert resolve_compile("auto", CPU, warn=lines.append) is False
    assert lines == [
        "mtrl: compile=auto: no C++ compiler (g++, c++ or clang++ on PATH) for torch.compile's CPU "
        "backend; the update runs eagerly"
    ]


def test_yaml_booleans_are_the_key_s_words(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(SMOKE.read_text() + "compile: true\n")
    assert load_config(path).compile == "true"
    assert load_config(SMOKE, {"compile": False}).compile == "false"


def test_compile_true_without_a_compiler_is_one_line_exit_2(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr(mtrl.compile.shutil, "which", lambda name: None)
    code, err = run_cli(["train", "--config", str(SMOKE), "--run-dir", str(tmp_path / "run"), "compile=true"], capsys)
    assert code == 2
    assert err.strip() == (
        "mtrl: error: compile=true but no C++ compiler (g++, c++ or clang++ on PATH) for "
        "torch.compile's CPU backend; use compile=auto or compile=false"
    )
    assert not (tmp_path / "run").exists()
