"""What a comparison runs: its episodes (:class:`EpisodeKey`) and settings (:class:`CompareConfig`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from genex.planners.options import PlannerOptions

#: ``--world-model`` value for the copy-last-frame baseline (the floor: imagination that shows nothing new)
COPY_LAST = "copy-last"


def _default_options() -> PlannerOptions:
    from genex.planners.options import PlannerOptions  # on first use: importing genex.compare stays light

    return PlannerOptions()


@dataclass(frozen=True)
class EpisodeKey:
    env: str
    planner: str
    seed: int

    @property
    def slug(self) -> str:
        return f"{self.env.split('/')[-1].replace(':', '_')}/{self.planner}/seed_{self.seed}"


@dataclass
class CompareConfig:
    envs: list[str]
    planners: list[str]
    episodes: int = 20
    seed: int = 200_000  # held out: world-model and policy data use seeds 0.. and 100000..
    # the planner options (samples, horizon, trust, memory, decision, ...: genex.planners.options); a mapping of
    # them is accepted and validated (unknown names refused)
    options: PlannerOptions = field(default_factory=_default_options)
    fidelity: bool = True  # read learned imagination through the world model's fidelity.json when it has one
    world_model: str | None = None  # checkpoint folder (default: the shipped one for the env family)
    policy: str | None = None  # tiny checkpoint folder (default: shipped)
    save_frames: bool = False
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    # foreign (non-genex) envs: "module:attribute" of a genex.envs.foreign.TaskSpec, and the frame size to adapt to
    task_spec: str | None = None
    image_size: int | None = None
    # executor="batched" (genex.compare.batching): episodes stepped in lockstep in one process, their world-model
    # and policy calls sent as one batch; not a setting of the results (a run resumes with another value)
    batch_episodes: int = 8

    def __post_init__(self) -> None:
        from genex.planners.options import as_options

        self.options = as_options(self.options)
        if isinstance(self.batch_episodes, bool) or not isinstance(self.batch_episodes, int) or self.batch_episodes < 1:
            raise ValueError(f"batch_episodes must be an integer >= 1, got {self.batch_episodes!r}")

    def make_env(self, env_id: str) -> Any:
        """Env ``env_id`` as the planners get it (foreign envs adapted: genex.envs.foreign.make_env)."""
        from genex.envs.foreign import make_env

        return make_env(env_id, self.env_kwargs, self.task_spec, self.image_size)

    def keys(self) -> list[EpisodeKey]:
        return [EpisodeKey(e, p, self.seed + i) for e in self.envs for i in range(self.episodes) for p in self.planners]
