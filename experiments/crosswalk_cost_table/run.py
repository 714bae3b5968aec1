"""Experiment: the crosswalk with the left turn's cost structure (waiting cheapest when a pedestrian comes).

Question: several of oracle-imagine's crosswalk collisions are creeps into a pedestrian already in front, because the
    shipped table makes ``creep`` the cheapest action under "a pedestrian is coming". Does the left turn's structure
    (creep 1.5 / 1.0, wait 0.5 / 2.0) do better?
Status: done, not kept (the shipped table is unchanged); result in docs/planners.md, "A cost-table experiment".
Result: on the 100 validation seeds react improved to 83% success / 17% collisions (from 72% / 28%), but
    oracle-imagine fell to 61% success (4% collisions, 46 real steps): it waits, a waiting car never reaches the
    distance that starts the pedestrian, and the episode times out.
Command:
    python experiments/crosswalk_cost_table/run.py react,oracle-imagine runs/val_cost_ro   # validation seeds 150000+

Usage: ``run.py PLANNERS OUT`` (PLANNERS comma-separated). It patches the scenario in this process only, so it runs
the episodes inline (worker processes would re-import the original table).
"""

from __future__ import annotations

import sys

import numpy as np

from genex.envs.driving import scenarios
from genex.compare import CompareConfig, compare, write_summary

# rows: accelerate, cruise, brake, creep, wait; columns: yes, no (the shipped table: creep 0.5 / 1.5, wait 1 / 2.5)
TABLE = np.array([[10.0, 0.0], [8.0, 0.5], [1.0, 2.0], [1.5, 1.0], [0.5, 2.0]], np.float32)


def main(argv: list[str]) -> int:
    if argv in (["-h"], ["--help"]):
        print(__doc__)
        return 0
    if len(argv) != 2:
        raise SystemExit(__doc__)
    planners, out = argv[0].split(","), argv[1]
    scenarios.OCCLUDED_CROSSWALK.action_costs["pedestrian_crossing"][:] = TABLE
    cfg = CompareConfig(envs=["genex/OccludedCrosswalk-v0"], planners=planners, episodes=100, seed=150_000)
    rows = compare(cfg, out, executor="inline", progress=True)
    print(write_summary(rows, out, planners, plots=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
