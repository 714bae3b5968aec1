"""Planner options: one validated value (genex.planners.PlannerOptions) from make_planner, CompareConfig and the CLI."""

from __future__ import annotations

import json
import re

import gymnasium as gym
import pytest

import genex.envs  # noqa: F401
from genex.cli import build_parser, main
from genex.planners import BeliefPlanner, ImaginePlanner, ParticlePlanner, PlannerOptions, make_planner
from genex.compare import CompareConfig
from genex.compare.store import check_resumable
from genex.compare.cli import compare_options
from genex.world_model import CopyLastFrameWorldModel


class OraclePerception:
    """A stand-in policy: these planners are built, never asked."""


def test_unknown_option_is_refused_with_the_valid_names_and_a_suggestion():
    with pytest.raises(ValueError, match=r"unknown planner option 'sampels' \(did you mean 'samples'\?\)") as e:
        PlannerOptions.from_mapping({"sampels": 2})
    for name in PlannerOptions.names():
        assert name in str(e.value)
    with pytest.raises(ValueError, match="unknown planner option 'zzz'; valid options: samples, horizon"):
        PlannerOptions.from_mapping({"zzz": 1})  # nothing close: no suggestion
    with pytest.raises(ValueError, match="did you mean 'trust'"):
        CompareConfig(envs=[], planners=[], options={"trusst": 0.5})


@pytest.mark.parametrize("mapping, match", [
    ({"samples": 0}, "samples, horizon, context and memory must be >= 1"),
    ({"horizon": 0}, "samples, horizon, context and memory must be >= 1"),
    ({"context": 0}, "samples, horizon, context and memory must be >= 1"),
    ({"memory": 0}, "memory"),
    ({"decision": "auto"}, r"decision must be one of \('plan', 'table'\)"),
    ({"particles": 0}, "particles and plan_horizon must be >= 1"),
    ({"plan_horizon": 0}, "particles and plan_horizon must be >= 1"),
    ({"trust": 2.0}, r"trust must be in \[0, 1\]"),
    ({"trust": -0.1}, "trust"),
    ({"imagine_every": 0}, "imagine_every must be >= 1"),
    ({"imagined_reading": "fuzzy"}, "imagined_reading must be 'hard' or 'soft'"),
    ({"confidence": 0.4}, "need 0.5 <= confidence <= 1 and budget >= 0"),
    ({"confidence": 1.5}, "confidence"),
    ({"budget": -1}, "budget"),
    ({"samples": "4"}, "samples must be an integer"),
    ({"samples": 2.5}, "samples must be an integer"),
    ({"samples": True}, "samples must be an integer"),
    ({"trust": "high"}, "trust must be a number"),
])
def test_each_invalid_option_is_refused(mapping, match):
    with pytest.raises(ValueError, match=match):
        PlannerOptions.from_mapping(mapping)
    with pytest.raises(ValueError, match=match):  # the same check wherever options enter
        make_planner("react", gym.make("genex/SettingsTabs-v0"), policy=OraclePerception(), **mapping)


def test_round_trip_and_defaults():
    default = PlannerOptions()
    assert PlannerOptions.from_mapping(None) == PlannerOptions.from_mapping({}) == default
    assert (default.samples, default.horizon, default.trust, default.memory, default.decision) == (4, 8, 0.7, 1, None)
    custom = PlannerOptions(samples=2, trust=1, decision="table", particles=4, imagined_reading="soft", budget=0)
    assert custom.trust == 1.0 and isinstance(custom.trust, float)
    d = custom.to_dict()
    assert list(d) == list(PlannerOptions.names()) and json.loads(json.dumps(d)) == d
    assert PlannerOptions.from_mapping(d) == custom and PlannerOptions.from_mapping(json.loads(json.dumps(d))) == custom
    assert custom.updated({"samples": 3}) == PlannerOptions(**{**d, "samples": 3})
    with pytest.raises(ValueError, match="did you mean 'budget'"):
        custom.updated({"budgett": 1})
    with pytest.raises(dataclasses_frozen_error()):
        custom.samples = 5  # type: ignore[misc]
    assert hash(custom) == hash(PlannerOptions.from_mapping(d))


def dataclasses_frozen_error():
    import dataclasses

    return dataclasses.FrozenInstanceError


def test_planners_take_one_options_argument_and_make_planner_folds_keywords():
    env = gym.make("genex/SettingsTabs-v0")
    pol = OraclePerception()
    assert BeliefPlanner(pol).options == PlannerOptions()
    assert BeliefPlanner(pol, options={"memory": 3}).options.memory == 3
    opts = PlannerOptions(samples=2, horizon=3)
    assert ImaginePlanner(pol, CopyLastFrameWorldModel(), opts).options is opts
    with pytest.raises(TypeError):
        BeliefPlanner(pol, samples=2)  # option keywords go through options= (or make_planner)
    with pytest.raises(TypeError, match="PlannerOptions or a mapping"):
        BeliefPlanner(pol, options=[("samples", 2)])
    pl = make_planner("react", env, policy=pol, samples=1, horizon=1)
    assert (pl.options.samples, pl.options.horizon) == (1, 1) and pl.options.trust == 0.7
    pl = make_planner("explore", env, policy=pol, options={"samples": 2, "budget": 3}, samples=5, confidence=0.6)
    assert pl.options == PlannerOptions(samples=5, budget=3, confidence=0.6)  # a keyword wins over options
    pl = make_planner("oracle-imagine", env, policy=pol, options=PlannerOptions(imagine_every=2), seed=9,
                      save_frames=True, fidelity=None)
    assert pl.options.imagine_every == 2 and pl.seed == 9 and pl.save_frames and pl.fidelity is None
    with pytest.raises(ValueError, match=r"unknown planner option 'sampels' \(did you mean 'samples'\?\).*"
                                         r"besides the options, the planner takes fidelity, save_frames, seed"):
        make_planner("react", env, policy=pol, sampels=2)
    # particle decides by the plan rule whatever decision says; the other options reach it
    pl = ParticlePlanner(pol, options={"decision": "table", "particles": 3})
    assert pl.options.decision == "plan" and pl.options.particles == 3


def test_cli_flags_keep_their_defaults_and_auto_is_none():
    parser = build_parser()
    base = ["compare", "--env", "genex/SettingsTabs-v0", "--out", "x"]
    assert compare_options(parser.parse_args(base)) == PlannerOptions()
    compare_help = next(a for a in parser._actions if a.dest == "command").choices["compare"].format_help()
    compare_help = " ".join(compare_help.split())
    for name in ("samples", "horizon", "trust", "imagine_every", "memory"):  # the defaults the help states
        flag = "--" + name.replace("_", "-")
        text = compare_help.split(flag)[-1].split(" --")[0]
        assert re.search(rf"default {getattr(PlannerOptions(), name)}[):]", text), (flag, text)
    args = parser.parse_args(base + ["--samples", "2", "--horizon", "3", "--trust", "0.5", "--imagine-every", "2",
                                     "--imagined-reading", "soft", "--memory", "4", "--decision", "table",
                                     "--option", "particles=4", "--option", "plan_horizon=16",
                                     "--option", "confidence=0.8", "--option", "budget=0", "--option", "context=2"])
    assert compare_options(args) == PlannerOptions(samples=2, horizon=3, trust=0.5, imagine_every=2,
                                                   imagined_reading="soft", memory=4, decision="table", particles=4,
                                                   plan_horizon=16, confidence=0.8, budget=0, context=2)
    assert compare_options(parser.parse_args(base + ["--decision", "auto"])).decision is None
    assert compare_options(parser.parse_args(base + ["--option", "decision=plan"])).decision == "plan"
    assert compare_options(parser.parse_args(base + ["--option", "samples=2"])).samples == 2
    for bad, match in ((["--option", "particles"], "KEY=VALUE"), (["--option", "particles=four"], "integer"),
                       (["--option", "trust=x"], "takes a number"),
                       (["--option", "samples=2", "--samples", "3"], "samples given twice: by --option and by --samples"),
                       (["--option", "particle=2"], "did you mean 'particles'")):
        with pytest.raises(ValueError, match=match):
            compare_options(parser.parse_args(base + bad))


def _compare(out, *extra):
    return main(["compare", "--env", "genex/OccludedCrosswalk-v0", "--planners", "particle", "--episodes", "1",
                 "--executor", "inline", "--quiet", "--no-plots", "--out", str(out), *extra])


def test_cli_option_reaches_the_planner_and_run_json(tmp_path):
    assert _compare(tmp_path / "run", "--option", "particles=4", "--option", "plan_horizon=16") == 0
    settings = json.loads((tmp_path / "run" / "run.json").read_text())["settings"]
    assert settings["options"] == PlannerOptions(particles=4, plan_horizon=16).to_dict()
    assert not {"samples", "trust", "memory", "decision"} & set(settings)  # one nested mapping, no copies
    (trace,) = (tmp_path / "run" / "traces").rglob("*.json")
    decisions = json.loads(trace.read_text())["decisions"]
    assert decisions[0]["plan"]["particles"] == 8  # 4 hypotheses per answer, two answers (the default gives 16)


def test_cli_unknown_option_is_refused_before_any_episode(tmp_path, monkeypatch):
    from genex.compare import execute

    monkeypatch.setattr(execute, "run_episode", lambda *a, **k: pytest.fail("an episode ran"))
    with pytest.raises(SystemExit, match=r"genex compare: unknown planner option 'nope'; valid options: samples"):
        _compare(tmp_path / "run", "--option", "nope=1")
    with pytest.raises(SystemExit, match="genex compare: option budget takes an integer"):
        _compare(tmp_path / "run", "--option", "budget=lots")
    with pytest.raises(SystemExit, match=r"genex compare: samples, horizon, context and memory must be >= 1"):
        _compare(tmp_path / "run", "--samples", "0")
    assert not (tmp_path / "run").exists()


def test_resume_with_a_changed_option_is_refused(tmp_path):
    out = tmp_path / "run"
    args = ["compare", "--env", "genex/SettingsTabs-v0", "--planners", "react", "--episodes", "1", "--executor",
            "inline", "--quiet", "--no-plots", "--out", str(out)]
    assert main(args + ["--option", "budget=3"]) == 0
    assert main(args + ["--option", "budget=3"]) == 0  # the same options: resumes (nothing left to do)
    with pytest.raises(SystemExit, match=r"other settings \(options.budget differ\); use another --out"):
        main(args)
    with pytest.raises(SystemExit, match=r"other settings \(options.memory, options.trust differ\)"):
        main(args + ["--option", "budget=3", "--trust", "0.5", "--memory", "2"])
    assert len((out / "episodes.jsonl").read_text().splitlines()) == 1


def test_a_run_json_with_flat_options_is_refused(tmp_path):
    """run.json written before the options were one mapping: no compatibility reading, a clear refusal."""
    settings = {"seed": 300, "options": PlannerOptions(samples=2).to_dict()}
    flat = {"settings": {"seed": 300, "samples": 2, "horizon": 8, "trust": 0.7, "imagine_every": 1,
                         "imagined_reading": "hard", "memory": 1, "decision": "auto"}}
    with pytest.raises(ValueError, match=r"older genex .*--restart-stale"):
        check_resumable(tmp_path, flat, settings, {})
    # an option added since the run started takes its default
    old = {"settings": {"seed": 300, "options": {k: v for k, v in settings["options"].items() if k != "budget"}}}
    check_resumable(tmp_path, old, settings, {})
    with pytest.raises(ValueError, match=r"options.budget differ"):
        check_resumable(tmp_path, old, {**settings, "options": {**settings["options"], "budget": 1}}, {})
