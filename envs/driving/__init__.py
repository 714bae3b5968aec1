"""Driving scenes: MuJoCo-rendered egocentric scenarios with hidden agents.

* :mod:`.dynamics`: kinematic dynamics as pure JAX functions (jit/vmap).
* :mod:`.scenarios`: the three scenario families, priors and costs.
* :mod:`.scene`: MJCF building, rendering and segmentation-based visibility.
* :mod:`.env`: the Gymnasium envs.
* :mod:`.drivers`: scripted drivers (random, cautious, aggressive, expert).
"""

from .scenarios import SCENARIOS

__all__ = ["SCENARIOS"]
