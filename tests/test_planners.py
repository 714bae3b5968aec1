"""Planners: the protocol on both env families, no access to hidden state, evidence math, decisions."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces

import genex.envs  # noqa: F401
from genex.envs.spec import PRIVILEGED_INFO_KEYS, Probe, public_info
from genex.planners import (PLANNERS, BeliefPlanner, DecisionTrace, ImaginePlanner, LookaheadPlanner, Planner,
                            default_checkpoint, make_planner, task_from_env)
from genex.policy.protocol import PolicyResponse
from genex.world_model import CopyLastFrameWorldModel, OracleWorldModel


class OraclePerception:
    """A test policy that answers 'is <fact> visible?' from a lookup the test controls."""

    name = "stub"

    def __init__(self, answer=lambda image, fact: 0.0, action=None):
        self.answer_fn, self.action, self.calls = answer, action, 0

    def answer(self, images, prompt, questions, actions=()):
        self.calls += 1
        per = {q.id: np.array([[p, 1 - p] for p in (self.answer_fn(im.image, q.id) for im in images)])
               for q in questions}
        imagined = np.array([im.imagined for im in images])
        return PolicyResponse(probs={k: v.mean(0) for k, v in per.items()}, per_image=per, imagined=imagined,
                              action=self.action)


class GuardedEnv(gym.Wrapper):
    """Hands a planner the env but raises if it touches anything that holds hidden state."""

    FORBIDDEN = ("world_state", "dynamics_params", "_layout", "_world", "_params", "app", "state")

    def __init__(self, env):
        super().__init__(env)
        object.__setattr__(self, "_guarded", _Guard(env.unwrapped, self.FORBIDDEN))

    @property
    def unwrapped(self):
        return self._guarded


class _Guard:
    def __init__(self, inner, forbidden):
        object.__setattr__(self, "_inner", inner)
        object.__setattr__(self, "_forbidden", forbidden)

    def __getattr__(self, name):
        if name in self._forbidden:
            raise AssertionError(f"a planner read privileged attribute {name!r}")
        return getattr(self._inner, name)


def run(planner, env, seed, max_steps=200, guard=True):
    obs, info = env.reset(seed=seed)
    planner.reset(GuardedEnv(env) if guard else env, seed=seed)
    traces, total, steps = [], 0.0, 0
    for steps in range(1, max_steps + 1):
        action, trace = planner.act(obs, public_info(info))
        if trace is not None:
            traces.append(trace)
        obs, r, term, trunc, info = env.step(action)
        total += r
        if term or trunc:
            break
    return info, traces, total, steps


def test_probe_likelihood_math():
    p = Probe("q", "ped", ("yes",), detect=0.8, false_alarm=0.02)
    np.testing.assert_allclose(p.likelihood(1.0, ("yes", "no")), [0.8, 0.02])
    np.testing.assert_allclose(p.likelihood(0.0, ("yes", "no")), [0.2, 0.98])
    np.testing.assert_allclose(p.likelihood(0.5, ("yes", "no")), [0.5, 0.5])
    with pytest.raises(ValueError, match="false_alarm < detect"):
        Probe("q", "ped", ("yes",), detect=0.1, false_alarm=0.2)
    with pytest.raises(ValueError, match="not answers"):
        p.likelihood(0.5, ("a", "b"))


def test_every_env_declares_consistent_probes_and_tasks():
    for env_id in genex.envs.ENV_IDS:
        env = gym.make(env_id)
        task = task_from_env(env)
        assert task.probes and task.facts, env_id
        assert set(task.facts) <= set(env.unwrapped.facts), env_id  # probes ask about labelled facts only
        if env_id != "genex/EditDocument-v0":  # its question is read off the first screen: nothing to explore
            assert task.exploration, f"{env_id} declares nothing to explore"
        env.close()


def test_planner_refuses_privileged_info():
    env = gym.make("genex/SettingsTabs-v0")
    planner = BeliefPlanner(OraclePerception())
    obs, info = env.reset(seed=0)
    planner.reset(env)
    assert any(k in info for k in PRIVILEGED_INFO_KEYS)
    with pytest.raises(ValueError, match="privileged"):
        planner.act(obs, info)
    action, trace = planner.act(obs, public_info(info))
    assert isinstance(planner, Planner) and isinstance(trace, DecisionTrace)


@pytest.mark.parametrize("env_id", ["genex/OccludedCrosswalk-v0", "genex/StoppedLeadCar-v0", "genex/SettingsTabs-v0",
                                    "genex/FileManager-v0"])
@pytest.mark.parametrize("name", ["react", "imagine", "lookahead", "explore", "prior", "particle", "amortized"])
def test_planners_never_read_hidden_state(env_id, name):
    """Each planner runs a whole episode through a guard that raises on any hidden-state attribute."""
    env = gym.make(env_id)
    cls = PLANNERS[name][0]
    if name == "particle" and "Crosswalk" not in env_id and "LeadCar" not in env_id:
        pytest.skip("the particle planner needs JAX dynamics (driving scenes)")
    if name == "amortized" and "Crosswalk" not in env_id:
        pytest.skip("the stub policy answers yes/no questions only; amortized asks the hidden question itself")
    wm = CopyLastFrameWorldModel() if PLANNERS[name][1] else None
    planner = cls(OraclePerception(), wm, options=dict(samples=2, horizon=2))
    info, traces, _, steps = run(planner, env, seed=3, max_steps=12)
    assert traces and traces[0].step == 0
    for t in traces:
        assert set(t.belief) == {q.id for q in env.unwrapped.questions}
        for p in t.belief.values():
            assert abs(sum(p) - 1) < 1e-5  # rounded to 6 digits in the trace
        t.to_json()  # JSON-friendly


@pytest.mark.parametrize("name", sorted(n for n, (_, wm, _) in PLANNERS.items() if wm != "learned"))
def test_every_planner_can_carry_out_a_guarded_plan(name):
    """A guarded plan asks the planner whether it sees a road user in the current frame (``_hazard_seen``): every
    planner must answer after a decision, also those that read no visible facts (prior, amortized)."""
    env = gym.make("genex/OccludedCrosswalk-v0")
    planner = make_planner(name, env, policy=OraclePerception(), samples=1, horizon=1)
    obs, info = env.reset(seed=1)
    planner.reset(env, seed=1)
    planner.act(obs, public_info(info))
    assert planner._hazard_seen() in (True, False)
    # a planner that cannot see what steps into view is not offered plans that assume it reacts to it
    assert planner.plans.guarded == (name not in ("prior", "amortized"))


def _label_frames(*envs):
    """Perfect perception for tests: record each rendered frame's visibility labels, keyed by its pixels."""
    labels: dict[bytes, dict[str, bool]] = {}
    for env in envs:
        u = env.unwrapped
        original = u._observation

        def observe(original=original, u=u):
            obs = original()
            visible = u._visible  # driving: the last step's labels; GUI: computed from the screen
            labels[obs["image"].tobytes()] = dict(visible() if callable(visible) else visible)
            return obs

        u._observation = observe
    return lambda image, fact: float(labels.get(image.tobytes(), {}).get(fact, False))


def test_oracle_imagine_sees_the_target_tab_and_needs_fewer_steps_than_react():
    """Settings: react searches tab by tab; imagination opens every tab in the mind first."""
    env, oracle_env = gym.make("genex/SettingsTabs-v0"), gym.make("genex/SettingsTabs-v0")
    truth = {}

    def perception(image, fact):  # perfect perception: is the target on this screen? (pixel lookup)
        return float(truth["frames"].get(image.tobytes(), False))

    steps = {"react": [], "oracle-imagine": []}
    for seed in range(8):
        for name in steps:
            pol = OraclePerception(perception)
            planner = make_planner(name, env, policy=pol, oracle_env=oracle_env)
            truth["frames"] = {}
            obs, info = env.reset(seed=seed)
            oracle_env.reset(seed=seed)
            # index every screen reachable by opening a tab, with its true "target" label
            for k in range(4):
                snap = env.unwrapped.snapshot()
                o, *_, i = env.step(env.unwrapped.choice_action(k)) if env.unwrapped.choice_action(k) else (obs, 0, 0, 0, info)
                truth["frames"][o["image"].tobytes()] = i["visible"]["target"]
                env.unwrapped.restore(snap)
            truth["frames"][obs["image"].tobytes()] = info["visible"]["target"]
            planner.reset(env, seed=seed)
            n = 0
            while True:
                a, _ = planner.act(obs, public_info(info))
                obs, r, term, trunc, info = env.step(a)
                truth["frames"].setdefault(obs["image"].tobytes(), info["visible"]["target"])
                n += 1
                if term or trunc:
                    break
            assert info["success"], (name, seed)
            steps[name].append(n)
    assert np.mean(steps["oracle-imagine"]) < np.mean(steps["react"])
    assert max(steps["oracle-imagine"]) == 2  # open the right tab, switch the setting on


def test_imagined_evidence_is_trust_weighted_and_mixed_over_samples():
    env = gym.make("genex/OccludedCrosswalk-v0")

    class TwoFutures:  # sample 0 shows a white frame (the stub sees a pedestrian there), sample 1 does not
        context_is_state = True

        def imagine_batch(self, contexts, actions, seed=None):
            b, t = len(actions), len(actions[0])
            out = np.zeros((b, t) + contexts.shape[2:], np.uint8)
            out[::2] = 255
            return out

    def sees_white(image, fact):
        return 1.0 if fact == "pedestrian" and image.mean() > 250 else 0.0

    beliefs = {}
    for trust in (0.0, 0.5, 1.0):
        planner = ImaginePlanner(OraclePerception(sees_white), TwoFutures(), options=dict(samples=2, horizon=3, trust=trust))
        obs, info = env.reset(seed=1)
        planner.reset(env, seed=1)
        _, trace = planner.act(obs, public_info(info))
        (branch,) = trace.branches
        assert branch["p_seen"]["pedestrian"] == [1.0, 0.0] and branch["frames"] == 6
        beliefs[trust] = trace.belief["pedestrian_crossing"][0]
        if trust == 0.0:
            assert trace.belief == trace.belief_real  # untrusted imagination changes nothing
    assert beliefs[0.0] < beliefs[0.5] < beliefs[1.0]  # half the futures show a pedestrian: P(yes) rises


def test_oracle_imagine_avoids_collisions_react_makes():
    """Crosswalk seeds where react deciding by the one-step cost table hits the pedestrian; the oracle's
    imagination sees it. Under the plan rule react hedges over hypotheses and does not hit it either."""
    env, oracle_env = gym.make("genex/OccludedCrosswalk-v0"), gym.make("genex/OccludedCrosswalk-v0")
    perception = _label_frames(env, oracle_env)
    collisions = {(name, rule): 0 for name in ("react", "oracle-imagine") for rule in ("table", "plan")}
    for seed in (1001, 1006):
        for name, rule in collisions:
            pl = make_planner(name, env, policy=OraclePerception(perception), oracle_env=oracle_env, horizon=8,
                              decision=rule)
            oracle_env.reset(seed=seed)
            info, traces, _, _ = run(pl, env, seed, guard=False)
            collisions[(name, rule)] += info["collisions"] > 0
            assert bool(traces[0].plan) == (rule == "plan")
    assert collisions == {("react", "table"): 2, ("oracle-imagine", "table"): 0, ("react", "plan"): 0,
                          ("oracle-imagine", "plan"): 0}


def test_imagining_each_icon_avoids_the_irreversible_clicks_react_walks_into():
    """MailCompose: react must guess which glyph saves (and sends or deletes half the time); imagining each
    click first (the simulator as world model, perfect perception) finds the right one in one real step."""
    env, oracle_env = gym.make("genex/MailCompose-v0"), gym.make("genex/MailCompose-v0")
    perception = _label_frames(env, oracle_env)
    errors = {"react": 0, "oracle-imagine": 0, "oracle-lookahead": 0}
    for seed in range(8):
        for name in errors:
            pl = make_planner(name, env, policy=OraclePerception(perception), oracle_env=oracle_env)
            oracle_env.reset(seed=seed)
            info, traces, _, steps = run(pl, env, seed, guard=False)
            errors[name] += info["irreversible_errors"]
            if name != "react":
                assert info["success"] and steps == 1, (name, seed)
                assert traces[0].imagined_frames == 4  # one imagined click per toolbar button
    assert errors["react"] >= 3 and errors["oracle-imagine"] == errors["oracle-lookahead"] == 0


def test_lookahead_scores_each_candidate():
    env = gym.make("genex/OccludedLeftTurn-v0")
    planner = LookaheadPlanner(OraclePerception(), CopyLastFrameWorldModel(), options=dict(samples=1, horizon=2))
    obs, info = env.reset(seed=0)
    planner.reset(env)
    _, trace = planner.act(obs, public_info(info))
    assert [b["name"] for b in trace.branches] == [f"{a} x2" for a in env.unwrapped.action_names]
    assert all("expected_cost" in b for b in trace.branches)
    assert trace.decision == int(np.argmin([b["expected_cost"] for b in trace.branches]))


class PixelWorld(gym.Env):
    """A non-genex env: image observations, Discrete actions, no questions."""

    observation_space = spaces.Box(0, 255, (8, 8, 3), np.uint8)
    action_space = spaces.Discrete(3)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros((8, 8, 3), np.uint8), {}

    def step(self, action):
        self.t += 1
        return np.full((8, 8, 3), 40 * self.t, np.uint8), float(action == 2), self.t >= 5, False, {}


def test_generic_env_adapter():
    env = PixelWorld()
    task = task_from_env(env)
    assert task.generic and task.action_names == ("action 0", "action 1", "action 2")
    info, traces, total, steps = run(BeliefPlanner(OraclePerception(action=2)), env, seed=0, guard=False)
    assert steps == 5 and total == 5.0 and all(t.decision == 2 for t in traces)
    _, traces, _, _ = run(BeliefPlanner(OraclePerception(action=None)), env, seed=0, guard=False)
    assert len({t.decision for t in traces}) > 1  # no action from the policy: seeded random choice


def test_make_planner_errors():
    env = gym.make("genex/OccludedCrosswalk-v0")
    with pytest.raises(ValueError, match="unknown planner"):
        make_planner("dream", env, policy=OraclePerception())
    with pytest.raises(ValueError, match="needs a world model"):
        ImaginePlanner(OraclePerception())
    with pytest.raises(ValueError, match="trust"):
        BeliefPlanner(OraclePerception(), options=dict(trust=2.0))
    with pytest.raises(RuntimeError, match="reset"):
        BeliefPlanner(OraclePerception()).act({"image": np.zeros((64, 64, 3), np.uint8)})
    planner = BeliefPlanner(OraclePerception())
    with pytest.raises(RuntimeError, match="env.reset.*before planner.reset"):  # the plan rule draws from the episode
        planner.reset(env)
    env.reset(seed=0)
    planner.reset(env)
    with pytest.raises(ValueError, match="uint8"):
        planner.act({"image": np.zeros((64, 64, 3), np.float32)})


def test_oracle_world_model_leaves_live_env_untouched():
    env = gym.make("genex/OccludedCrosswalk-v0")
    obs, info = env.reset(seed=5)
    planner = make_planner("oracle-imagine", env, policy=OraclePerception())
    planner.reset(env, seed=5)
    before = env.unwrapped.snapshot()
    planner.act(obs, public_info(info))
    o2, *_ = env.step(0)
    env2 = gym.make("genex/OccludedCrosswalk-v0")
    env2.reset(seed=5)
    o3, *_ = env2.step(0)
    np.testing.assert_array_equal(o2["image"], o3["image"])
    assert isinstance(planner.world_model, OracleWorldModel)
    assert int(before.state["world"].t) == 0


def test_imagine_every_reuses_evidence_between_imaginations():
    env = gym.make("genex/OccludedLeftTurn-v0")
    planner = ImaginePlanner(OraclePerception(), CopyLastFrameWorldModel(),
                             options=dict(samples=2, horizon=2, imagine_every=3))
    info, traces, _, _ = run(planner, env, seed=0, max_steps=7)
    imagined = [t.imagined_frames for t in traces]
    assert imagined[:7] == [4, 0, 0, 4, 0, 0, 4]
    assert traces[1].branches[0]["reused"] and traces[1].branches[0]["evidence"] == traces[0].branches[0]["evidence"]
    with pytest.raises(ValueError, match="imagine_every"):
        ImaginePlanner(OraclePerception(), CopyLastFrameWorldModel(), options=dict(imagine_every=0))


def test_hypotheses_redraw_hidden_agents_without_the_truth():
    env = gym.make("genex/OccludedCrosswalk-v0")
    u = env.unwrapped
    ped = u.scenario.slot("pedestrian")
    draws = {}
    for seed in (1000, 1001):  # no pedestrian / a pedestrian
        _, info = env.reset(seed=seed)
        params, states, answers = u.hypotheses(3, seed=7)
        assert answers.tolist() == [0, 0, 0, 1, 1, 1] and params.trigger_tta.shape[0] == 6
        np.testing.assert_array_equal(states.agents.present[:, ped], [True] * 3 + [False] * 3)
        draws[info["answers"]["pedestrian_crossing"]] = (params.trigger_tta[:, ped], states.agents.y[:, ped])
    (a_tta, a_y), (b_tta, b_y) = draws.values()
    np.testing.assert_array_equal(a_tta, b_tta)  # the hidden agents depend on the hypothesis seed only
    np.testing.assert_array_equal(a_y, b_y)
    with pytest.raises(ValueError, match="n_per_answer"):
        u.hypotheses(0, seed=0)


def test_particle_planner_avoids_the_hidden_pedestrian_and_rejects_gui():
    from genex.planners import ParticlePlanner

    env = gym.make("genex/OccludedCrosswalk-v0")
    # perfect perception: its guarded plans brake for the pedestrian once it steps out (a blind one could not)
    planner = ParticlePlanner(OraclePerception(_label_frames(env)), options=dict(particles=4, plan_horizon=16))
    info, traces, total, _ = run(planner, env, seed=1001, guard=False)  # react by the cost table hits it
    assert info["success"] and info["collisions"] == 0
    assert traces[0].plan["particles"] == 8
    with pytest.raises(ValueError, match="JAX dynamics"):
        ParticlePlanner(OraclePerception()).reset(gym.make("genex/SettingsTabs-v0"))


def test_fidelity_shrinks_imagined_evidence():
    from genex.evaluation.fidelity import apply_fidelity

    p = Probe("q", "ped", ("yes",), detect=0.8, false_alarm=0.02)
    (half,) = apply_fidelity([p], {"ped": {"recall": 0.5, "false_alarm": 0.1}})
    assert half.false_alarm == 0.1 and half.detect == pytest.approx(0.1 + 0.5 * 0.7)
    assert apply_fidelity([p], {"ped": {"recall": 0.0, "false_alarm": 0.0}}) == ()  # imagination says nothing
    assert apply_fidelity([p], {}) == ()  # never measured: nothing either
    assert apply_fidelity([p], None) == (p,)  # the oracle: face value


def test_calibrated_imagination_reads_the_thresholded_event_its_rates_were_measured_on():
    """With fidelity, an imagined sample counts as seen iff P > 0.5 (the event calibration counts): noise far
    below the threshold must not break ties. Here it would steer to the irreversible button (MailCompose)."""
    env, oracle_env = gym.make("genex/MailCompose-v0"), gym.make("genex/MailCompose-v0")
    gone = {(200, 44, 44), (37, 99, 200)}  # the deleted / sent page's banner colours

    def perception(image, fact):  # never sees the target; a hair more "yes" on a deleted or sent page
        banner = tuple(int(c) for c in image[60, 64])
        return 0.01 if banner in gone else 1e-4

    fidelity = {"target": {"recall": 0.5, "false_alarm": 0.0}}
    chosen = {}
    for reading in ("hard", "soft"):
        pl = ImaginePlanner(OraclePerception(perception), OracleWorldModel(oracle_env), fidelity=fidelity,
                            options=dict(imagined_reading=reading))
        obs, info = env.reset(seed=3)
        oracle_env.reset(seed=3)
        pl.reset(env, seed=3)
        _, trace = pl.act(obs, public_info(info))
        chosen[reading] = info["hidden"]["icons"][trace.decision]
        if reading == "hard":
            assert np.allclose(trace.belief["target_icon"], 0.25)  # no evidence: the prior, as react has
    assert chosen["hard"] == info["hidden"]["icons"][0] and chosen["soft"] in ("send", "delete")
    with pytest.raises(ValueError, match="imagined_reading"):
        ImaginePlanner(OraclePerception(), CopyLastFrameWorldModel(), options=dict(imagined_reading="fuzzy"))


def test_fidelity_per_env_pools_by_window_count_and_wins_for_its_env(tmp_path):
    """One model may know a fact in one app (a tab's page) and not in another sharing its name (a random folder):
    a planner reads its env's own numbers, the pool weights each env by its windows."""
    import json

    from genex.evaluation.fidelity import fidelity_key, load_fidelity, pool_fidelity

    by_env = {"genex/SettingsTabs-v0": {"target": {"recall": 0.9, "false_alarm": 0.0, "positives": 10, "negatives": 30}},
              "genex/FileManager-v0": {"target": {"recall": 0.0, "false_alarm": 0.2, "positives": 30, "negatives": 10}}}
    pooled = pool_fidelity(by_env, ["target", "never_seen"])
    assert pooled["target"]["recall"] == pytest.approx(0.9 * 10 / 40)
    assert pooled["target"]["false_alarm"] == pytest.approx(0.2 * 10 / 40)
    assert pooled["never_seen"] == {"recall": 0.0, "false_alarm": 1.0, "positives": 0, "negatives": 0}
    (tmp_path / "fidelity.json").write_text(json.dumps({"facts": pooled, "by_env": by_env}))
    assert load_fidelity(tmp_path)["target"]["recall"] == pytest.approx(0.225)
    assert load_fidelity(tmp_path, env_id="genex/SettingsTabs-v0")["target"]["recall"] == 0.9
    assert load_fidelity(tmp_path, env_id="genex/FileManager-v0")["target"]["recall"] == 0.0
    assert "never_seen" not in load_fidelity(tmp_path, env_id="genex/SettingsTabs-v0")  # own numbers only
    assert load_fidelity(tmp_path, env_id="genex/TicketShop-v0")["never_seen"]["false_alarm"] == 1.0  # pooled
    # another layout of an env is another env: its own key, else the pooled numbers
    assert fidelity_key("genex/SettingsTabs-v0", {}) == "genex/SettingsTabs-v0"
    random_layout = fidelity_key("genex/SettingsTabs-v0", {"tab_layout": "random"})
    assert random_layout == 'genex/SettingsTabs-v0 {"tab_layout": "random"}'
    assert load_fidelity(tmp_path, "genex/SettingsTabs-v0", {"tab_layout": "random"})["target"]["recall"] == 0.225
    (tmp_path / "fidelity.json").write_text(json.dumps({"facts": pooled}))  # files from before by_env
    assert load_fidelity(tmp_path, env_id="genex/SettingsTabs-v0")["target"]["recall"] == pytest.approx(0.225)


def test_measure_fidelity_on_recordings(tmp_path, monkeypatch):
    """A model that replays the true future has recall 1; copy-last-frame never shows what comes into view."""
    import dataclasses

    import genex.recording
    from genex.evaluation.fidelity import measure_fidelity
    from genex.recording import iter_episodes, read_manifest, record_episodes

    record_episodes("genex/OccludedLeftTurn-v0", tmp_path, 4, driver="cautious", seed=0, progress=False)
    facts = read_manifest(tmp_path).facts
    episodes = []
    for e, ep in enumerate(iter_episodes(tmp_path)):  # stamp frames so that equal views stay distinguishable
        frames = ep.frames.copy()
        frames[:, 0, 0] = [e, 0, 0]
        frames[:, 0, 1, 0] = np.arange(len(frames)) % 256
        episodes.append(dataclasses.replace(ep, frames=frames))
    monkeypatch.setattr(genex.recording, "iter_episodes", lambda d: iter(episodes))
    labels, futures = {}, {}
    for ep in episodes:
        for t, frame in enumerate(ep.frames):
            labels[frame.tobytes()] = dict(zip(facts, ep.visible[t]))
        for t in range(len(ep.frames)):
            futures[ep.frames[t].tobytes()] = ep.frames[t + 1:]
    perception = OraclePerception(lambda image, fact: float(labels.get(image.tobytes(), {}).get(fact, False)))

    class Replay:
        def imagine(self, context, actions, num_samples=1, seed=None):
            fut = futures[context[-1].tobytes()][:len(actions)]
            return np.repeat(fut[None], num_samples, axis=0)

    replay = measure_fidelity(Replay(), perception, [tmp_path], ["oncoming_vehicle"], horizon=4, samples=2,
                              progress=False)["oncoming_vehicle"]
    assert replay["positives"] > 0 and replay["recall"] == 1.0 and replay["false_alarm"] == 0.0
    copy = measure_fidelity(CopyLastFrameWorldModel(), perception, [tmp_path], ["oncoming_vehicle"], horizon=4,
                            samples=2, progress=False)["oncoming_vehicle"]
    assert copy["recall"] == 0.0 and copy["positives"] == replay["positives"]
    per_env = measure_fidelity(Replay(), perception, [tmp_path], ["oncoming_vehicle"], horizon=4, samples=2,
                               progress=False, by_env=True)
    assert per_env == {"genex/OccludedLeftTurn-v0": {"oncoming_vehicle": replay}}


def test_measure_fidelity_on_gui_recordings_passes_clicks_and_each_episodes_instruction(tmp_path):
    """GUI recordings: click/type actions reach the world model as recorded; the prompt is the episode's."""
    from genex.evaluation.fidelity import measure_fidelity
    from genex.recording import iter_episodes, record_episodes

    record_episodes("genex/SettingsTabs-v0", tmp_path, 3, driver="random", seed=0, progress=False)
    instructions = {str(ep.meta["instruction"]) for ep in iter_episodes(tmp_path)}
    seen_actions, seen_prompts = [], []

    class Recorder:
        def imagine(self, context, actions, num_samples=1, seed=None):
            seen_actions.extend(actions)
            return np.repeat(np.repeat(context[-1:][None], len(actions), axis=1), num_samples, axis=0)

    class Perception(OraclePerception):
        def answer(self, images, prompt, questions, actions=()):
            seen_prompts.append(prompt)
            return super().answer(images, prompt, questions, actions)

    out = measure_fidelity(Recorder(), Perception(lambda image, fact: 0.0), [tmp_path], ["target"], horizon=1,
                           samples=2, context=2, stride=1, progress=False)
    assert seen_actions and all(isinstance(a, dict) for a in seen_actions)
    assert set(seen_prompts) <= instructions and len(instructions) > 1
    assert out["target"]["recall"] == 0.0 and out["target"]["negatives"] > 0


def test_make_planner_reads_the_shipped_world_model_through_its_fidelity():
    from genex.evaluation.fidelity import load_fidelity

    env = gym.make("genex/OccludedCrosswalk-v0")
    shipped = load_fidelity(default_checkpoint("world_model", "driving"))
    assert shipped is not None
    assert make_planner("imagine", env, policy=OraclePerception()).fidelity == shipped
    assert make_planner("imagine", env, policy=OraclePerception(), fidelity=None).fidelity is None


def test_shipped_gui_world_model_imagines_for_the_gui_planners():
    """`imagine` on a GUI app with the shipped GUI world model: imagined screens, a finished episode."""
    from genex.compare import CompareConfig, EpisodeKey, run_episode

    try:
        default_checkpoint("world_model", "gui")
    except FileNotFoundError:
        pytest.skip("no GUI world-model checkpoint shipped")
    cfg = CompareConfig(envs=["genex/SettingsTabs-v0"], planners=["imagine"], options={"samples": 2})
    row = run_episode(cfg, EpisodeKey("genex/SettingsTabs-v0", "imagine", 200_000))
    assert row["imagined_frames"] > 0 and row["steps"] >= 1 and row["decisions"] >= 1


def test_cli_measure_fidelity_writes_fidelity_json(tmp_path, capsys):
    """The command behind the shipped fidelity.json: shipped checkpoints, a tiny recording, a JSON file."""
    import json

    from genex.cli import main
    from genex.recording import record_episodes

    record_episodes("genex/OccludedCrosswalk-v0", tmp_path / "rec", 2, driver="cautious", seed=0, progress=False)
    out = tmp_path / "fidelity.json"
    assert main(["measure-fidelity", "--world-model", str(default_checkpoint("world_model", "driving")),
                 "--policy", str(default_checkpoint("policy", "driving")), "--data", str(tmp_path / "rec"),
                 "--horizon", "2", "--samples", "1", "--max-windows", "3", "--quiet", "--out", str(out)]) == 0
    body = json.loads(out.read_text())
    assert "pedestrian" in body["facts"] and body["horizon"] == 2
    assert body["command"].startswith("genex measure-fidelity --world-model ")  # what was run, not pytest's argv
    assert all(0 <= f["recall"] <= 1 and 0 <= f["false_alarm"] <= 1 for f in body["facts"].values())
    assert f"wrote {out}" in capsys.readouterr().out
    # the numbers are bound to the weights they were measured on
    from genex.evaluation.fidelity import StaleFidelityError, load_fidelity, weights_sha256

    wm = default_checkpoint("world_model", "driving")
    assert body["world_model_sha256"] == weights_sha256(wm) is not None
    folder = tmp_path / "wm"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"sha256": "0" * 64}))  # retrained weights, old fidelity.json
    (folder / "fidelity.json").write_text(out.read_text())
    with pytest.raises(StaleFidelityError, match="measure-fidelity"):
        load_fidelity(folder)
    (folder / "config.json").write_text((wm / "config.json").read_text())
    assert load_fidelity(folder) == body["facts"]
    # ... and to the policy that read the imagined frames: another policy's reading is another fidelity
    from genex.evaluation.fidelity import policy_sha256

    driving_policy, gui_policy = default_checkpoint("policy", "driving"), default_checkpoint("policy", "gui")
    assert body["policy_sha256"] == policy_sha256(driving_policy) is not None
    assert load_fidelity(folder, policy_dir=driving_policy) == body["facts"]
    with pytest.raises(StaleFidelityError, match="policy"):
        load_fidelity(folder, policy_dir=gui_policy)
    # genex compare refuses before running an episode, and --no-fidelity lets it run
    from genex.compare import CompareConfig, check_fidelity

    cfg = CompareConfig(envs=["genex/OccludedCrosswalk-v0"], planners=["react", "imagine"], world_model=str(folder),
                        policy=str(gui_policy))
    with pytest.raises(StaleFidelityError, match="--no-fidelity"):
        check_fidelity(cfg)
    check_fidelity(CompareConfig(envs=cfg.envs, planners=cfg.planners, world_model=str(folder),
                                 policy=str(gui_policy), fidelity=False))
    check_fidelity(CompareConfig(envs=cfg.envs, planners=cfg.planners, world_model=str(folder)))


def test_memory_keeps_a_sighting_for_that_many_frames():
    """A pedestrian seen in one frame and gone the next: memory=1 forgets it at once, memory=3 keeps it for
    the next two decisions (the largest P(visible) of the kept frames), then lets it go."""
    env = gym.make("genex/OccludedCrosswalk-v0")
    seen_at = {0}
    step = {"t": 0}

    def seen_once(image, fact):
        return 1.0 if fact == "pedestrian" and step["t"] in seen_at else 0.0

    curves = {}
    for memory in (1, 3):
        planner = BeliefPlanner(OraclePerception(seen_once), options=dict(memory=memory))
        obs, info = env.reset(seed=1)
        planner.reset(env, seed=1)
        curve = []
        for t in range(5):
            step["t"] = t
            _, trace = planner.act(obs, public_info(info))
            curve.append(trace.belief["pedestrian_crossing"][0])
            assert trace.real_p_seen["pedestrian"] == (1.0 if t == 0 else 0.0)
            assert (trace.kept_p_seen != {}) == (memory > 1)
        curves[memory] = np.round(curve, 6)
    assert curves[1][0] > 0.9 and all(p < 0.5 for p in curves[1][1:])
    assert all(p > 0.9 for p in curves[3][:3]) and all(p < 0.5 for p in curves[3][3:])
    np.testing.assert_allclose(curves[3][3:], curves[1][3:])
    with pytest.raises(ValueError, match="memory"):
        BeliefPlanner(OraclePerception(), options=dict(memory=0))


def test_imagine_tells_a_world_model_what_each_imagined_click_targets():
    """GUI branches reach the world model with the clicked widget's label (the tab's name, public on screen, as
    in a WebDreamer action description), so a ``click_text`` model knows which page the click opens."""
    env = gym.make("genex/SettingsTabs-v0")
    obs, info = env.reset(seed=5)
    names = list(env.unwrapped.app.state.tab_names)
    seen: list = []

    class Recorder:
        def imagine(self, context, actions, num_samples=1, seed=None):
            seen.append(list(actions))
            return np.repeat(np.repeat(context[-1:][None], len(actions), axis=1), num_samples, axis=0)

    planner = make_planner("imagine", GuardedEnv(env), policy=OraclePerception(), world_model=Recorder(),
                           fidelity=None)
    planner.reset(GuardedEnv(env), seed=5)
    action, _ = planner.act(obs, public_info(info))
    assert "label" not in action  # the env gets its plain action
    labels = sorted(a[0]["label"] for a in seen)
    assert labels == sorted(names[1:])  # tab 1 is open at the start: the other three are imagined


def test_ticket_shop_reads_the_price_and_compares_it_with_the_budget():
    """The policy reads text; the env's NumberReading turns "Price: $N" and "at most $B" into the answer."""
    from genex.envs.spec import NumberReading

    env = gym.make("genex/TicketShop-v0")
    obs, info = env.reset(seed=4)
    (reading,) = env.unwrapped.readings
    budget = info["hidden"]["budget"]
    assert reading.reference_number(obs["text"]) == budget
    assert reading.texts(obs["text"])[0] == f"Price: ${budget - 60}" and len(reading.texts(obs["text"])) == 121
    trips = [t for t in info["hidden"]["trips"] if t["city"] == info["hidden"]["city"]]

    def perception(image, fact):  # a perfect reader of the open dialog's price (the dialog of listing `opened`)
        price = trips[opened]["price"]
        return float(fact == "details" or fact == f"Is the text 'Price: ${price}' on screen?")

    class TextReader(OraclePerception):
        def answer(self, images, prompt, questions, actions=()):
            self.asked = questions
            per = {q.id: np.array([[p, 1 - p] for p in [perception(None, q.id if not q.id.startswith("read:")
                                                                    else q.text)] * len(images)]) for q in questions}
            return PolicyResponse(probs={k: v.mean(0) for k, v in per.items()}, per_image=per,
                                  imagined=np.zeros(len(images), bool), action=None)

    planner = BeliefPlanner(TextReader())
    planner.reset(env, seed=4)
    planner.prompt = obs["text"]
    planner._timers, planner._policy_images = {"policy": 0.0}, 0
    for opened in range(3):
        (p,) = planner._p_seen([obs["image"]], imagined=True)
        cheap = trips[opened]["price"] <= budget
        assert p["affordable_details"] == pytest.approx(1.0 if cheap else 0.0)
        assert p["expensive_details"] == pytest.approx(0.0 if cheap else 1.0)
    assert sum(q.id.startswith("read:") for q in planner.policy.asked) == 121
    nothing = reading.read(obs["text"], 0.8, np.zeros(121))
    assert nothing == {"affordable_details": 0.4, "expensive_details": 0.4}  # nothing read: no evidence either way
    with pytest.raises(ValueError, match="group"):
        NumberReading("a", "b", given="c", template="{}", reference=r"\d+")
    with pytest.raises(ValueError, match="template"):
        NumberReading("a", "b", given="c", template="Price", reference=r"(\d+)")


def test_particle_is_react_under_the_plan_rule():
    """Same perception, same hypotheses, same plans: the particle row is react's, step for step."""
    from genex.planners import ParticlePlanner

    env = gym.make("genex/OccludedCrosswalk-v0")
    perception = _label_frames(env)
    actions = {}
    for name, planner in (("react", BeliefPlanner(OraclePerception(perception))),
                          ("particle", ParticlePlanner(OraclePerception(perception), options=dict(decision="table")))):
        _, traces, _, steps = run(planner, env, seed=1006, guard=False)
        actions[name] = [t.decision for t in traces]
        assert traces[0].plan["particles"] == 16
    assert actions["react"] == actions["particle"] and len(actions["react"]) > 10
