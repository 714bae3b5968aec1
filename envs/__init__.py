"""genex environments (installed as ``genex.envs``): Gymnasium envs with hidden state.

Importing this module registers every env under the ``genex/`` namespace::

    import gymnasium as gym
    import genex.envs
    env = gym.make("genex/OccludedCrosswalk-v0")   # driving scene (MuJoCo)
    env = gym.make("genex/SettingsTabs-v0")        # mock GUI app (Pillow)
    # or, without the import: gym.make("genex.envs:genex/OccludedCrosswalk-v0")

Contracts shared by all envs (questions, action costs, hidden info,
visibility labels, snapshots) are in :mod:`genex.envs.spec`. For RL libraries
(Stable-Baselines3 and the like), :mod:`genex.envs.wrappers` turns an env into an
image ``Box`` observation with ``Discrete`` actions:
``genex.envs.wrappers.make_rl_env("genex/SettingsTabs-v0")`` (imported on demand,
not here). This package never imports torch.
"""

from __future__ import annotations

from gymnasium.envs.registration import register, registry

from .ids import DRIVING_ENV_IDS
from .spec import EnvSnapshot, HiddenStateEnv, Probe, Question, ScriptedDriver, SnapshotMismatchError

__all__ = [
    "DRIVING_ENV_IDS",
    "ENV_IDS",
    "GUI_ENV_IDS",
    "EnvSnapshot",
    "HiddenStateEnv",
    "Probe",
    "Question",
    "ScriptedDriver",
    "SnapshotMismatchError",
    "drivers_for",
    "make_driver",
]



def _register_all() -> None:
    entry = "genex.envs.driving.env:{}Env"
    for env_id in DRIVING_ENV_IDS:
        if env_id in registry:
            continue
        name = env_id.split("/")[1].removesuffix("-v0")
        # Truncation is handled inside the env (max_steps) so snapshots capture it; no TimeLimit wrapper.
        register(id=env_id, entry_point=entry.format(name), disable_env_checker=False)


_register_all()

from .gui import GUI_ENV_IDS, register_gui_envs  # noqa: E402  (gymnasium only; apps load on make)

register_gui_envs()
ENV_IDS: tuple[str, ...] = DRIVING_ENV_IDS + GUI_ENV_IDS

from .scripted import drivers_for, make_driver  # noqa: E402
