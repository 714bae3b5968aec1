"""imagine-voi: value-of-information gating of imagination (genex.planners.voi, ImaginePlanner._gated_evidence)."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest

import genex.envs  # noqa: F401
from genex.belief import Belief
from genex.envs.spec import Probe, Question
from genex.planners import PLANNERS, ImaginePlanner, PlannerOptions, VOIImaginePlanner, make_planner
from genex.planners.voi import evsi, sample_outcomes
from genex.world_model import CopyLastFrameWorldModel, OracleWorldModel
from test_planners import OraclePerception, _label_frames, run


class SimulatorAsLearned:
    """A 'learned' world model (context_is_state) that imagines with the simulator from the live env's state:
    imagine and imagine-voi then see the same, exact futures, so their decisions can be compared."""

    context_is_state = True

    def __init__(self, env):
        self.oracle = OracleWorldModel(env)
        self.frames = 0

    def imagine_batch(self, contexts, actions, seed=None):
        out = np.stack([self.oracle.imagine(None, list(a), 1)[0] for a in actions])
        self.frames += out.shape[0] * out.shape[1]
        return out


def _planners(name, env, **options):
    perception = _label_frames(env)  # perfect perception of real and imagined frames alike
    wm = SimulatorAsLearned(env)
    return make_planner(name, env, policy=OraclePerception(perception), world_model=wm, fidelity=None,
                        **options), wm


# ---------------------------------------------------------------- the arithmetic
QUESTION = Question("q", "which?", ("a", "b"))
PROBE = Probe("q", "sign", ("a",), detect=0.9, false_alarm=0.1)


def test_outcomes_are_the_predictive_distribution_of_a_reading():
    outs = sample_outcomes([PROBE], {"q": np.array([0.3, 0.7])}, {"q": ("a", "b")})
    assert [o.reading for o in outs] == [{"sign": 1.0}, {"sign": 0.0}]
    np.testing.assert_allclose([o.probability for o in outs], [0.3 * 0.9 + 0.7 * 0.1, 0.3 * 0.1 + 0.7 * 0.9])
    two = sample_outcomes([PROBE, Probe("q", "hint", ("b",), 0.5, 0.2)], {"q": np.array([0.5, 0.5])},
                          {"q": ("a", "b")})
    assert len(two) == 4 and sum(o.probability for o in two) == pytest.approx(1.0)
    assert sample_outcomes([], {"q": np.array([0.5, 0.5])}, {"q": ("a", "b")}) == []


def test_evsi_is_zero_unless_an_outcome_changes_the_decision():
    now = np.array([1.0, 2.0])
    assert evsi(now, [(0.5, [1.0, 2.0]), (0.5, [0.5, 3.0])]) == 0.0  # every outcome keeps decision 0
    assert evsi(now, [(0.25, [3.0, 1.0]), (0.75, [0.5, 3.0])]) == pytest.approx(0.25 * 2.0)  # one flips it
    # a certain belief: no reading moves it, so no outcome changes the decision
    certain = Belief([QUESTION], priors={"q": [1.0, 0.0]})
    costs = {"q": np.array([[0.0, 5.0], [5.0, 0.0]])}
    outs = sample_outcomes([PROBE], {"q": certain.probs("q")}, {"q": ("a", "b")})
    after = []
    for o in outs:
        b = certain.copy()
        lik = PROBE.likelihood(o.reading["sign"], ("a", "b"))
        b.update_imagined("q", [lik / lik.sum()], 0.7)
        after.append((o.probability, b.expected_costs(costs)))
    assert evsi(certain.expected_costs(costs), after) == 0.0


# ---------------------------------------------------------------- the planner
def test_registered_with_the_learned_world_model_and_on_by_default():
    assert PLANNERS["imagine-voi"] == (VOIImaginePlanner, "learned", "tiny")
    env = gym.make("genex/MailCompose-v0")
    env.reset(seed=0)
    pol, wm = OraclePerception(), CopyLastFrameWorldModel()
    assert make_planner("imagine-voi", env, policy=pol, world_model=wm, fidelity=None).name == "imagine-voi"
    gated = {}
    for name, options in (("imagine-voi", {}), ("imagine", {}), ("lookahead", {}), ("imagine", {"voi": True}),
                          ("lookahead", {"voi": True}), ("imagine-voi", {"voi": False})):
        pl = make_planner(name, env, policy=pol, world_model=wm, fidelity=None, **options)
        pl.reset(env, seed=0)
        gated[(name, options.get("voi"))] = pl.voi_gated
    assert gated == {("imagine-voi", None): True, ("imagine", None): False, ("lookahead", None): False,
                     ("imagine", True): True, ("lookahead", True): True, ("imagine-voi", False): False}


def test_imagines_where_an_outcome_flips_the_decision_and_fewer_frames_than_imagine():
    """MailCompose, perfect imagination and perception: imagine looks at all four buttons; imagine-voi looks one
    at a time, stops once the next look cannot pay, and clicks what imagine clicks."""
    env = gym.make("genex/MailCompose-v0")
    frames = {"imagine": 0, "imagine-voi": 0}
    for seed in range(6):
        decisions = {}
        for name in frames:
            pl, wm = _planners(name, env, samples=2)
            info, traces, _, _ = run(pl, env, seed, guard=False)
            frames[name] += sum(t.imagined_frames for t in traces)
            assert wm.frames == sum(t.imagined_frames for t in traces)
            assert info["success"] and info["irreversible_errors"] == 0, (name, seed)
            decisions[name] = [t.decision for t in traces]
            if name == "imagine-voi":
                first = traces[0].branches
                assert all(b["voi"]["evsi"]["first"] > 0 for b in first)  # under the uniform prior any look can flip
                assert first[0]["frames"] >= 1  # so the first is imagined
                for b in first:  # each branch is either imagined (its frames, its evidence) or skipped with why
                    assert (b["frames"] == 0) == b["voi"]["skipped"] == (not b["evidence"])
                    if b["voi"]["skipped"]:
                        assert b["voi"]["reason"]
                json.dumps(traces[0].to_json())  # the trace stays JSON
        assert decisions["imagine-voi"] == decisions["imagine"], seed
    assert frames["imagine-voi"] < frames["imagine"]


def test_saved_frames_are_the_imagined_samples_only():
    env = gym.make("genex/MailCompose-v0")
    pl, _ = _planners("imagine-voi", env, samples=2)
    pl.save_frames = True
    _, traces, _, _ = run(pl, env, 1, guard=False)
    frames = traces[0].frames
    for b in traces[0].branches:
        key = f"imagined/{b['name']}"
        if b["frames"]:
            assert frames[key].shape[:2] == (b["voi"]["samples"], b["steps"])
        else:
            assert key not in frames


def test_nothing_is_imagined_when_the_belief_is_certain():
    """SettingsTabs opens on tab 1: where the real frame shows the target there, no look at another tab can
    change the decision (EVSI 0), so nothing is imagined; imagine imagines the other tabs anyway."""
    env = gym.make("genex/SettingsTabs-v0")
    seed = next(s for s in range(40) if env.reset(seed=s)[1]["answers"]["target_tab"] == 0)
    pl, wm = _planners("imagine-voi", env)
    info, traces, _, _ = run(pl, env, seed, guard=False)
    assert info["success"] and traces[0].imagined_frames == 0 and wm.frames == 0
    assert max(traces[0].belief["target_tab"]) > 0.9
    skipped = [b for b in traces[0].branches if "voi" in b]
    assert skipped and all(b["voi"]["skipped"] and b["voi"]["evsi"]["first"] == 0.0 for b in skipped)
    assert all("no outcome" in b["voi"]["reason"] for b in skipped)
    pl, wm = _planners("imagine", env)
    _, traces_imagine, _, _ = run(pl, env, seed, guard=False)
    assert traces_imagine[0].imagined_frames > 0 and traces_imagine[0].decision == traces[0].decision


def test_nothing_is_imagined_when_every_outcome_leads_to_the_same_decision():
    """trust=0: imagined evidence moves nothing, so every outcome keeps the decision (EVSI 0); a cost per frame
    above every EVSI skips too, for the other reason."""
    env = gym.make("genex/MailCompose-v0")
    for options, reason in (({"trust": 0.0}, "no outcome"), ({"voi_cost": 100.0}, "below the cost")):
        pl, wm = _planners("imagine-voi", env, **options)
        _, traces, _, _ = run(pl, env, 0, guard=False)
        assert wm.frames == 0 and all(t.imagined_frames == 0 for t in traces)
        assert all(b["voi"]["skipped"] and reason in b["voi"]["reason"] for b in traces[0].branches)


def test_lookahead_takes_the_gate_as_an_option():
    env = gym.make("genex/MailCompose-v0")
    frames, decisions = {}, {}
    for voi in (None, True):
        pl, wm = _planners("lookahead", env, samples=2, voi=voi)
        total = []
        for seed in range(4):
            _, traces, _, _ = run(pl, env, seed, guard=False)
            total.append(sum(t.imagined_frames for t in traces))
            decisions.setdefault(voi, []).append([t.decision for t in traces])
        frames[voi] = total
    assert frames[None] == [8] * 4 and sum(frames[True]) < sum(frames[None])
    assert decisions[True] == decisions[None]


def test_gated_runs_are_deterministic_and_the_plan_rule_is_gated():
    """The driving plan rule: the gate scores each outcome by the plans' costs; two runs draw the same."""
    env = gym.make("genex/OccludedCrosswalk-v0")
    runs = []
    for _ in range(2):
        pl = VOIImaginePlanner(OraclePerception(), CopyLastFrameWorldModel(), options=dict(samples=2, horizon=3))
        _, traces, _, _ = run(pl, env, seed=3, max_steps=3)
        assert pl.decision_rule == "plan" and pl.voi_gated
        runs.append([{k: v for k, v in t.to_json().items() if k != "seconds"} for t in traces])
        for t in traces:
            (b,) = t.branches
            assert b["voi"]["evsi"]["first"] is not None and b["frames"] == 3 * b["voi"]["samples"]
    assert runs[0] == runs[1]


def test_bad_gate_options_are_refused():
    for mapping, match in (({"voi": "yes"}, "voi must be true, false or None"), ({"voi": 1}, "voi must be"),
                           ({"voi_cost": -0.1}, "voi_cost must be a finite number >= 0"),
                           ({"voi_cost": float("inf")}, "voi_cost"), ({"voi_cost": "cheap"}, "voi_cost must be a number")):
        with pytest.raises(ValueError, match=match):
            PlannerOptions.from_mapping(mapping)
        with pytest.raises(ValueError, match=match):
            make_planner("imagine-voi", gym.make("genex/MailCompose-v0"), policy=OraclePerception(),
                         world_model=CopyLastFrameWorldModel(), fidelity=None, **mapping)
    assert PlannerOptions.parse_value("voi", "true") is True and PlannerOptions.parse_value("voi", "off") is False
    assert PlannerOptions.parse_value("voi", "auto") is None and PlannerOptions.parse_value("voi_cost", "0.5") == 0.5
    with pytest.raises(ValueError, match="takes true or false"):
        PlannerOptions.parse_value("voi", "maybe")
    assert PlannerOptions().voi is None and PlannerOptions().voi_cost >= 0
    assert not ImaginePlanner.voi_default and VOIImaginePlanner.voi_default


def test_cli_compare_runs_imagine_voi(tmp_path, capsys):
    from genex.cli import main

    out = tmp_path / "run"
    assert main(["compare", "--env", "genex/MailCompose-v0", "--planners", "imagine-voi", "--episodes", "1",
                 "--samples", "2", "--out", str(out), "--executor", "inline", "--quiet", "--no-plots"]) == 0
    assert "imagine-voi" in capsys.readouterr().out
    (row,) = [json.loads(line) for line in (out / "episodes.jsonl").read_text().splitlines()]
    assert row["planner"] == "imagine-voi" and row["imagined_per_decision"] <= 8
