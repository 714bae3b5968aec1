"""Run planners on held-out episodes and summarize them honestly: ``genex compare``.

Output folder::

    run.json                     the settings and the digests of the checkpoints used (a rerun with other
                                 settings or other weights into the same folder is refused)
    episodes.jsonl               one row per finished episode, appended and flushed (fsync) as it ends
    traces/<env>/<planner>/seed_<seed>.json     every DecisionTrace of the episode (atomic write)
    frames/<env>/<planner>/seed_<seed>.npz      real and imagined frames (``--save-frames`` only)
    summary.md, summary.csv      mean and 95% CI per (env, planner)
    bars.png, compute.png        success / collision bars with CIs; success vs imagined frames per decision

A rerun with the same ``--out`` skips the episodes already in
``episodes.jsonl`` (a torn last line from a kill is ignored), so an
interrupted comparison resumes where it stopped. Episodes run in worker
processes (``spawn``; one torch thread each), on Ray (``executor="ray"``), or batched
(``executor="batched"``, ``genex compare --executor batched --batch-episodes B``): ``B`` episodes in
lockstep in one process (threads, each with its own env and planner), whose world-model and policy calls
reach the shared models as one batch call; the world model draws each call's noise from that call's own
seed, so an episode's row does not depend on ``B`` or on thread timing, up to the float arithmetic of
batched convolutions (:mod:`.batching`; ``bench/batched_compare.py`` measures both the speed and that
share). A failing batched episode is reported with its key (:class:`EpisodeFailure`) after the others end.

Planners only ever see :func:`genex.envs.spec.public_info`; hidden truth is
read here, after the fact, for the metrics.

The parts, one job each: :mod:`.config` (what runs), :mod:`.episode` (one episode), :mod:`.store` (the run
folder and resume), :mod:`.execute` (many episodes: checks, executors), :mod:`.stats` (means, CIs, gap shares,
paired comparisons), :mod:`.report` (tables, CSV, plots) and :mod:`.batching` (the batched executor). The CLI is :mod:`genex.compare.cli`.
"""

from __future__ import annotations

from .config import COPY_LAST, CompareConfig, EpisodeKey
from .batching import EpisodeFailure
from .faults import FAULT_ENV
from .episode import episode_conditions, run_episode
from .execute import (
                    EXECUTORS,
                    RAY_MAX_RETRIES,
                    check_envs_support_planners,
                    check_fidelity,
                    compare,
)
from .report import format_gap_shares, format_paired, format_table, write_summary
from .stats import (
                    GAP_REFERENCES,
                    METRICS,
                    gap_closed,
                    gap_shares,
                    mean_ci,
                    paired_against,
                    paired_gap_closed,
                    summarize,
)
from .store import checkpoint_digests, load_rows

__all__ = ["CompareConfig", "EpisodeKey", "run_episode", "compare", "load_rows", "summarize", "write_summary",
           "METRICS", "gap_shares", "format_gap_shares", "GAP_REFERENCES", "COPY_LAST",
           "episode_conditions", "FAULT_ENV", "RAY_MAX_RETRIES", "check_envs_support_planners",
           "check_fidelity", "format_paired", "format_table", "gap_closed", "mean_ci", "paired_against",
           "paired_gap_closed", "checkpoint_digests", "EXECUTORS", "EpisodeFailure"]
