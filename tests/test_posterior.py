"""The fair upper bound: the posterior world model imagines what the real frames imply, never the truth."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import genex.envs  # noqa: F401
from genex.envs.spec import public_info
from genex.planners import PLANNERS, make_planner, posterior_env_ids
from genex.world_model import PosteriorWorldModel

CROSSWALK = "genex/OccludedCrosswalk-v0"
CRUISE = 1


def _share_with_pedestrian(model: PosteriorWorldModel, samples: int, seed: int) -> float:
    """Share of ``samples`` imagined futures whose hypothesis has a pedestrian (answer 0 = yes)."""
    model.imagine(None, [CRUISE] * 2, num_samples=samples, seed=seed)
    return float(np.mean(model.answers[model.last_draw] == 0))


def test_no_cue_windows_imagine_the_prior_and_cued_ones_more():
    """Before any cue the share of futures with a pedestrian is the prior's 0.4 whether or not one is really there
    (nothing of the truth leaks); after a ball rolled out it rises to what a ball implies."""
    env, sim = gym.make(CROSSWALK), gym.make(CROSSWALK)
    model = PosteriorWorldModel(sim, hypotheses_per_answer=8)
    shares: dict[bool, list[float]] = {True: [], False: []}
    for seed in range(40):
        _, info = env.reset(seed=seed)
        assert not info["visible"]["pedestrian"] and not info["visible"]["ball"]  # no cue in a first frame
        model.reset(env, seed=seed)
        model.observe(None, info["visible"])
        shares[info["hidden"]["pedestrian_crossing"]].append(_share_with_pedestrian(model, 8, seed))
    everything = shares[True] + shares[False]
    n = 8 * len(everything)
    half = 1.96 * np.sqrt(0.4 * 0.6 / n)
    assert abs(np.mean(everything) - 0.4) <= half
    assert abs(np.mean(shares[True]) - np.mean(shares[False])) <= 0.05  # the truth does not shift it

    # cued windows: drive on until a ball shows, then imagine (cue_prob 1: a pedestrian brings a ball or feet)
    cued_env, cued_sim = gym.make(CROSSWALK, cue_prob=1.0), gym.make(CROSSWALK, cue_prob=1.0)
    model = PosteriorWorldModel(cued_sim, hypotheses_per_answer=8)
    cued = []
    for seed in range(60):
        if len(cued) >= 12:
            break
        _, info = cued_env.reset(seed=seed)
        if info["hidden"]["cue"] != "ball" and not (not info["hidden"]["pedestrian_crossing"] and seed % 2):
            continue  # keep the ball episodes (and a few without a pedestrian, which rarely show a stray ball)
        model.reset(cued_env, seed=seed)
        model.observe(None, info["visible"])
        for _ in range(14):
            _, _, term, trunc, info = cued_env.step(CRUISE)
            model.observe(CRUISE, info["visible"])
            if info["visible"]["ball"] and not info["visible"]["pedestrian"]:
                cued.append(_share_with_pedestrian(model, 8, seed))
                break
            if term or trunc or info["visible"]["pedestrian"]:
                break
    assert len(cued) >= 8
    # P(pedestrian | ball) = 0.4 * 0.5 / (0.4 * 0.5 + 0.6 * 0.1) = 0.77 under this prior
    assert np.mean(cued) > 0.6 > np.mean(everything) + 0.15


def test_posterior_draws_are_reproducible_and_follow_what_is_seen():
    env, sim = gym.make(CROSSWALK), gym.make(CROSSWALK)
    _, info = env.reset(seed=1006)  # a pedestrian steps out
    model = PosteriorWorldModel(sim, hypotheses_per_answer=4)
    model.reset(env, seed=3)
    model.observe(None, info["visible"])
    a = model.imagine(None, [CRUISE] * 3, num_samples=4, seed=11)
    assert a.shape == (4, 3, 64, 64, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, model.imagine(None, [CRUISE] * 3, num_samples=4, seed=11))
    np.testing.assert_allclose(model.answer_posterior(), [0.4, 0.6])
    for _ in range(30):
        _, _, term, trunc, info = env.step(CRUISE)
        model.observe(CRUISE, info["visible"])
        if info["visible"]["pedestrian"] or term or trunc:
            break
    assert info["visible"]["pedestrian"]
    for _ in range(3):  # a few frames of the pedestrian: the hypotheses without one are gone
        _, _, term, trunc, info = env.step(2)
        model.observe(2, info["visible"])
    assert model.answer_posterior()[0] > 0.99
    with pytest.raises(ValueError, match="first frame"):
        model.observe(None, info["visible"])
    with pytest.raises(ValueError, match="visibility labels"):
        model.observe(CRUISE, {})


def test_posterior_imagine_runs_a_guarded_episode_and_refuses_envs_without_hypotheses():
    from test_planners import GuardedEnv, OraclePerception

    assert PLANNERS["posterior-imagine"][1] == "posterior"
    env = gym.make(CROSSWALK)
    obs, info = env.reset(seed=2)
    planner = make_planner("posterior-imagine", env, policy=OraclePerception(), samples=2, horizon=2)
    guarded = GuardedEnv(env)
    planner.reset(guarded, seed=2)
    for _ in range(5):
        action, trace = planner.act(obs, public_info(info))
        (branch,) = trace.branches
        assert branch["frames"] == 4 and len(branch["drawn_answers"]) == 2 and sum(branch["posterior"]) == pytest.approx(1)
        assert trace.plan  # the plan rule decided
        obs, _, term, trunc, info = env.step(action)
    assert set(posterior_env_ids()) == set(genex.envs.DRIVING_ENV_IDS)
    gui = gym.make("genex/SettingsTabs-v0")
    with pytest.raises(ValueError, match="genex/SettingsTabs-v0 has none.*genex/OccludedCrosswalk-v0"):
        make_planner("posterior-imagine", gui, policy=OraclePerception())
    with pytest.raises(TypeError, match="hypotheses"):
        PosteriorWorldModel(gui)


def test_compare_refuses_posterior_imagine_on_gui_envs_before_running(tmp_path):
    from genex.compare import CompareConfig, compare

    cfg = CompareConfig(envs=["genex/SettingsTabs-v0"], planners=["react", "posterior-imagine"], episodes=1)
    with pytest.raises(ValueError, match="SettingsTabs-v0 cannot. Envs that can: genex/OccludedCrosswalk-v0"):
        compare(cfg, tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "episodes.jsonl").exists()


def test_the_filter_reads_real_frames_through_the_policy_and_the_labels_variant_through_a_perfect_detector():
    """``posterior-imagine`` weighs its hypotheses by the policy's reading of the real frames (react's perception);
    with a perfect policy it is ``posterior-imagine-labels`` step for step, and a policy that misses the ball keeps
    it from learning what the ball implies. An unsure reading (P = 0.5) changes no weight."""
    from test_planners import OraclePerception, _label_frames

    env, sim = gym.make(CROSSWALK, cue_prob=1.0), gym.make(CROSSWALK, cue_prob=1.0)
    _, info = env.reset(seed=23)
    model = PosteriorWorldModel(sim, hypotheses_per_answer=4)
    model.reset(env, seed=23)
    model.observe(None, {f: 0.5 for f in info["visible"]})
    np.testing.assert_allclose(model.answer_posterior(), [0.4, 0.6])

    perfect = _label_frames(env)
    runs = {}
    for name, policy in [("posterior-imagine", OraclePerception(perfect)),
                         ("posterior-imagine-labels", OraclePerception(perfect)),
                         ("blind", OraclePerception())]:
        planner = make_planner("posterior-imagine" if name == "blind" else name, env, policy=policy, samples=2,
                               horizon=2)
        obs, info = env.reset(seed=23)  # a ball rolls out ahead of the pedestrian (step 5 when cruising)
        planner.reset(env, seed=23)
        actions, p_yes, ball_seen = [], [], False
        for _ in range(12):
            action, trace = planner.act(obs, public_info(info))
            actions.append(action)
            p_yes.append(trace.belief["pedestrian_crossing"][0])
            obs, _, term, trunc, info = env.step(action)
            ball_seen |= bool(info["visible"]["ball"])
            if term or trunc:
                break
        runs[name] = (actions, p_yes, ball_seen)
    assert runs["posterior-imagine"][:2] == runs["posterior-imagine-labels"][:2]
    assert runs["posterior-imagine"][2] and max(runs["posterior-imagine"][1]) > 0.6  # what a ball implies: 0.77
    assert runs["blind"][2] and max(runs["blind"][1]) < 0.45  # the ball was there; this policy did not read it
