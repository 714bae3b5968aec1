"""The ids of the driving scenes (a leaf module: the package and its scripted drivers both read it)."""

from __future__ import annotations

__all__ = ["DRIVING_ENV_IDS"]

DRIVING_ENV_IDS: tuple[str, ...] = (
    "genex/OccludedCrosswalk-v0",
    "genex/StoppedLeadCar-v0",
    "genex/OccludedLeftTurn-v0",
)
