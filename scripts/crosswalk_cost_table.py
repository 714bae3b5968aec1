"""Experiment (docs/planners.md, "A cost-table experiment"): the crosswalk with the left turn's cost structure.

Under "a pedestrian is coming" this table makes waiting, not creeping, the cheapest action. It patches the
scenario in this process only, so it runs the episodes inline (worker processes would re-import the
original table).

    python scripts/crosswalk_cost_table.py react,oracle-imagine runs/val_cost_ro   # validation seeds 150000+
"""

from __future__ import annotations

import sys

import numpy as np

from genex.envs.driving import scenarios
from genex.runner import CompareConfig, compare, write_summary

# rows: accelerate, cruise, brake, creep, wait; columns: yes, no (the shipped table: creep 0.5 / 1.5, wait 1 / 2.5)
TABLE = np.array([[10.0, 0.0], [8.0, 0.5], [1.0, 2.0], [1.5, 1.0], [0.5, 2.0]], np.float32)


def main(argv: list[str]) -> int:
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
