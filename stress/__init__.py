"""stress: scenarios, episodes, verdicts and the ``python -m stress`` CLI."""

from .episode import EpisodeConfig, EpisodeResult, run_episode
from .outcomes import Grade, Outcome
from .scenarios import SCENARIOS, Scenario, get_scenario

__all__ = ["EpisodeConfig", "EpisodeResult", "Grade", "Outcome", "SCENARIOS", "Scenario",
           "get_scenario", "run_episode"]
