"""Evaluation helpers shared by the experiments under ``experiments/``: measurements of a world model or a planner
that need privileged access to the simulator, so no planner may use them.

Modules: :mod:`.counterfactual` (crosswalk episodes replayed with the hidden pedestrian's presence flipped, the
window groups and the per-sample choice between the two real futures that the counterfactual stochasticity test
counts, and the picture of such windows).
"""
