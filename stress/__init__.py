"""stress: scenarios, episodes, soak runs, post-mortems and the ``python -m stress`` CLI.

The public names below are loaded on first use (PEP 562), so that
``python -m stress`` imports almost nothing before it can handle Ctrl-C.
"""

from __future__ import annotations

import importlib
from typing import Any

#: public name -> the module that defines it
_EXPORTS = {
    "EpisodeConfig": "episode", "EpisodeResult": "episode", "Interrupted": "episode", "Keep": "episode",
    "WorkloadDriver": "episode", "finish_kernel": "episode", "run_episode": "episode", "write_log": "episode",
    "Timing": "config", "DEMO_TIMING": "config", "RUN_TIMING": "config", "SOAK_TIMING": "config",
    "ConfigError": "config",
    "Grade": "outcomes", "Outcome": "outcomes", "Shape": "outcomes",
    "SCENARIOS": "scenarios", "Scenario": "scenarios", "get_scenario": "scenarios",
    "pages_leaving": "scenarios", "sleeps_on": "scenarios", "jitter": "scenarios",
    "Sequencer": "sequencer", "StepTimeout": "sequencer",
    "WorkloadParams": "workload", "generate": "workload",
    "SoakConfig": "soak", "SoakSettings": "soak", "run_soak": "soak",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'stress' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)


def __dir__() -> list[str]:
    return __all__
