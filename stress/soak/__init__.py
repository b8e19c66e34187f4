"""Soak runs: many randomized episodes, the same seeds under every policy, in
worker processes; an outcome histogram per policy, graded, with replay commands.

``settings`` (what an episode needs), ``worker`` (the worker process side),
``pool`` (worker slots), ``runner`` (scheduling, stopping, the replay check),
``report`` (text, JSON, progress).
"""

from .report import INVARIANT_FAMILIES, PolicyStats, SoakReport, format_report, progress_printer, report_json
from .runner import SoakConfig, empty_rate, run_soak, verify_replays
from .settings import SoakSettings, replay_command, settings_flags
from .worker import run_one

__all__ = ["INVARIANT_FAMILIES", "PolicyStats", "SoakConfig", "SoakReport", "SoakSettings", "empty_rate",
           "format_report", "progress_printer", "replay_command", "report_json", "run_one", "run_soak",
           "settings_flags", "verify_replays"]
