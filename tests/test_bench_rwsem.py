"""Smoke test of benchmarks/rwsem.py: it runs with tiny parameters and writes its JSON.

Marked ``bench`` (excluded by default): run with ``pytest -m bench``.
The figures themselves are not checked, only that they are there and positive.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Iterator

import pytest

pytestmark = pytest.mark.bench

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "rwsem.py"
TINY = ["--repeats", "2", "--ops", "2000", "--mix-seconds", "0.1", "--mix-repeats", "2"]


@pytest.fixture(scope="module")
def bench() -> Iterator[ModuleType]:
    """The script, imported from its path (benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location("bench_rwsem", SCRIPT)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    try:
        spec.loader.exec_module(mod)
        yield mod
    finally:
        sys.modules.pop(spec.name, None)


def _run(bench: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
         ) -> tuple[dict[str, Any], str]:
    out = tmp_path / "rwsem.json"
    assert bench.main([*TINY, "--json", str(out)]) == 0
    return json.loads(out.read_text()), capsys.readouterr().out


def _positive(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and x > 0


def _check_common(doc: dict[str, Any]) -> None:
    assert set(doc) >= {"environment", "params", "empty_loop_ns_per_op", "uncontended", "mix",
                        "goals"}
    env = doc["environment"]
    assert env["python"] and _positive(env["switchinterval"]) and _positive(env["cpus"])
    assert doc["params"]["repeats"] == 2 and doc["params"]["ops"] == 2000
    assert _positive(doc["empty_loop_ns_per_op"])
    unc = doc["uncontended"]
    for ctx in ("harness", "task"):
        for op in ("read_trylock", "read", "write"):
            assert f"rwsem.{ctx}.{op}" in unc
    assert unc["lock"]["ratio_to_lock"] == pytest.approx(1.0)
    for key, row in unc.items():
        assert _positive(row["ns_per_op"]), key
        assert _positive(row["ratio_to_lock"]), key
        assert len(row["samples_ns_per_op"]) == 2 and all(map(_positive, row["samples_ns_per_op"]))
        assert row["ns_per_op"] == min(row["samples_ns_per_op"])
    for key in ("lock", "rwsem", "rwsem_handoff"):
        row = doc["mix"][key]
        assert row["errors"] == [], row["errors"]
        assert _positive(row["ops_per_s"]) and _positive(row["ratio_to_lock"])
        assert row["ops_per_s"] == max(row["samples_ops_per_s"])
    assert len(doc["goals"]) == 4
    first = doc["goals"][0]
    assert _positive(first["ratio"]) and isinstance(first["met"], bool)


def test_runs_and_writes_json(bench: ModuleType, tmp_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    doc, text = _run(bench, tmp_path, capsys)
    _check_common(doc)
    assert "sys.getswitchinterval()" in text and "Goals" in text
    if bench.load_readerwriterlock() is None:
        assert "pip install readerwriterlock" in text
    else:
        for op in ("read_trylock", "read", "write"):
            assert _positive(doc["uncontended"][f"rwl.harness.{op}"]["ns_per_op"])
        assert _positive(doc["mix"]["rwl"]["ops_per_s"])
        assert all(_positive(g["ratio"]) and isinstance(g["met"], bool) for g in doc["goals"])


def test_without_readerwriterlock(bench: ModuleType, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str],
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench, "load_readerwriterlock", lambda: None)
    doc, text = _run(bench, tmp_path, capsys)
    _check_common(doc)
    assert "skipped" in text and "pip install readerwriterlock" in text
    assert doc["environment"]["readerwriterlock"] is None
    assert not any(k.startswith("rwl.") for k in doc["uncontended"])
    assert "rwl" not in doc["mix"]
    assert [g["met"] for g in doc["goals"][1:3]] == [None, None]
    assert isinstance(doc["goals"][3]["met"], bool)  # the mix vs threading.Lock needs no rwl


@pytest.mark.parametrize("argv", [["--repeats", "0"], ["--ops", "x"], ["--mix-seconds", "0"],
                                  ["--bogus"], ["--json", "/nonexistent-dir/x.json"]])
def test_bad_arguments_exit_2(bench: ModuleType, argv: list[str],
                              capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.main(argv) == 2
