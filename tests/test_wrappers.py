"""genex.envs.wrappers: every env passes SB3's and Gymnasium's checkers once wrapped, wrapped actions are the
apps' choices, observations are the raw images, and a short PPO run trains and acts on a driving and a GUI env."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import data_equivalence

import genex.envs
from genex.envs.gui import GUI_ENV_IDS
from genex.envs.gui.actions import ACTION_TYPES
from genex.envs.wrappers import DiscreteChoices, ImageObservation, TextHashObservation, make_rl_env

WAIT = ACTION_TYPES.index("wait")
# Gymnasium's checker always says this of a wrapped env; checking the wrapped env is the point here
WRAPPED_NOTE = "is different from the unwrapped version"


def _warnings_that_matter(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if WRAPPED_NOTE not in str(w.message)]


@pytest.mark.parametrize("text", [False, True], ids=["image", "text"])
@pytest.mark.parametrize("env_id", genex.envs.ENV_IDS)
def test_wrapped_env_passes_sb3_and_gymnasium_checkers(env_id, text):
    pytest.importorskip("stable_baselines3")
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    env = make_rl_env(env_id, text=text)
    try:
        assert isinstance(env.action_space, gym.spaces.Discrete)
        if text:
            assert isinstance(env.observation_space, gym.spaces.Dict)
            assert env.observation_space["text"].dtype == np.float32
            image_space = env.observation_space["image"]
        else:
            image_space = env.observation_space
        assert image_space.dtype == np.uint8 and image_space.shape[-1] == 3 and min(image_space.shape[:2]) >= 36
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            sb3_check_env(env, warn=True)
            gym.utils.env_checker.check_env(env, skip_render_check=False)
        assert _warnings_that_matter(caught) == []
    finally:
        env.close()


@pytest.mark.parametrize("env_id", ["genex/OccludedCrosswalk-v0", "genex/TicketShop-v0"])
def test_image_observation_is_the_raw_image(env_id):
    raw, wrapped = gym.make(env_id), make_rl_env(env_id)
    chw = ImageObservation(gym.make(env_id), channels_first=True)
    try:
        obs_raw, _ = raw.reset(seed=3)
        obs, _ = wrapped.reset(seed=3)
        obs_chw, _ = chw.reset(seed=3)
        assert chw.observation_space.shape == (3, *wrapped.observation_space.shape[:2])
        rng = np.random.default_rng(0)
        for t in range(12):
            np.testing.assert_array_equal(obs, obs_raw["image"])
            np.testing.assert_array_equal(obs_chw, obs_raw["image"].transpose(2, 0, 1))
            assert wrapped.observation_space.contains(obs) and chw.observation_space.contains(obs_chw)
            k = int(rng.integers(wrapped.action_space.n))
            act = raw.unwrapped.choice_action(k) if env_id in GUI_ENV_IDS else k
            act = {"type": WAIT} if act is None else act
            obs_raw, _, terminated, truncated, _ = raw.step(act)
            obs, *_ = wrapped.step(k)
            obs_chw, *_ = chw.step(act)
            if terminated or truncated:  # start the next episode in all three
                (obs_raw, _), (obs, _), (obs_chw, _) = (e.reset(seed=100 + t) for e in (raw, wrapped, chw))
    finally:
        for e in (raw, wrapped, chw):
            e.close()


@pytest.mark.parametrize("action_mode", ["pixel", "element"])
@pytest.mark.parametrize("env_id", GUI_ENV_IDS)
def test_discrete_action_k_performs_the_apps_choice_k(env_id, action_mode):
    """Stepping the wrapped env with k == stepping a twin raw env with choice_action(k) (or wait when it has
    nothing left to do): same primitive action, image, reward, termination and info."""
    raw = gym.make(env_id, action_mode=action_mode)
    wrapped = make_rl_env(env_id, action_mode=action_mode)
    names = raw.unwrapped.action_names
    choices = wrapped.env
    assert isinstance(choices, DiscreteChoices)
    assert wrapped.action_space == gym.spaces.Discrete(len(names))
    assert wrapped.get_wrapper_attr("action_names") == names
    rng = np.random.default_rng(1)
    waits = steps = episode = 0
    while steps < 40 or waits == 0:  # a few episodes (MailCompose's are 1-3 steps), some with spent choices
        assert episode < 100, f"{steps} steps, {waits} waits in 100 episodes"
        episode += 1
        obs_raw, info_raw = raw.reset(seed=episode)
        obs, info = wrapped.reset(seed=episode)
        done = False
        while not done:
            k = int(rng.integers(len(names)))
            expected = raw.unwrapped.choice_action(k)
            sent = choices.action(np.int64(k))
            if expected is None:
                waits += 1
                assert sent["type"] == WAIT
                expected = sent
            else:
                assert sent == expected
            assert raw.action_space.contains(sent)
            obs_raw, r_raw, term_raw, trunc_raw, info_raw = raw.step(expected)
            obs, r, term, trunc, info = wrapped.step(np.array(k))
            steps += 1
            np.testing.assert_array_equal(obs, obs_raw["image"])
            assert (r, term, trunc) == (r_raw, term_raw, trunc_raw)
            assert data_equivalence(info, info_raw)
            assert not info["invalid_action"]
            done = term or trunc


def test_choice_k_opens_tab_k():
    env = make_rl_env("genex/SettingsTabs-v0")
    env.reset(seed=0)
    app = env.unwrapped.app
    for k in (2, 0, 3, 1):
        if app.state.outcome is not None:
            break
        env.step(k)
        assert app.state.open_tab == k


def test_text_hash_observation_tells_tasks_apart():
    env = TextHashObservation(gym.make("genex/SettingsTabs-v0"), dim=64)
    vecs, texts = [], []
    raw = gym.make("genex/SettingsTabs-v0")
    for seed in range(6):
        obs, _ = env.reset(seed=seed)
        obs_raw, _ = raw.reset(seed=seed)
        assert env.observation_space.contains(obs)
        np.testing.assert_array_equal(obs["image"], obs_raw["image"])
        np.testing.assert_array_equal(obs["text"], env.encode(obs_raw["text"]))
        assert set(np.unique(obs["text"])) <= {0.0, 1.0} and obs["text"].sum() >= 3
        vecs.append(obs["text"])
        texts.append(obs_raw["text"])
    distinct_texts = len(set(texts))
    assert distinct_texts > 1
    assert len({v.tobytes() for v in vecs}) == distinct_texts
    # stable across processes: crc32, not Python's salted str hash
    expected = np.zeros(8, np.float32)
    expected[[7, 0]] = 1.0  # crc32("turn") % 8 == 7, crc32("on") % 8 == 0
    np.testing.assert_array_equal(TextHashObservation(gym.make("genex/SettingsTabs-v0"), dim=8).encode("Turn ON"),
                                  expected)


def test_spec_remakes_the_wrapped_env():
    env = make_rl_env("genex/FileManager-v0", tab_layout="grouped", channels_first=True)
    again = gym.make(env.spec)
    assert isinstance(again, ImageObservation) and isinstance(again.env, DiscreteChoices)
    a, _ = env.reset(seed=5)
    b, _ = again.reset(seed=5)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (3, 128, 128)


def test_clear_errors_for_what_cannot_be_adapted():
    with pytest.raises(ValueError, match="cannot adapt.*image"):
        make_rl_env("CartPole-v1")
    with pytest.raises(ValueError, match="declares no action choices"):
        DiscreteChoices(gym.make("CartPole-v1"))
    with pytest.raises(TypeError, match="env id only"):
        make_rl_env(gym.make("genex/MailCompose-v0"), screen_size=64)
    with pytest.raises(TypeError, match="env id"):
        make_rl_env(42)
    env = make_rl_env(gym.make("genex/MailCompose-v0"))  # an env works as well as an id
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"in \[0, 4\)"):
        env.step(4)
    with pytest.raises(ValueError, match="integer choice"):
        env.step(1.5)


@pytest.mark.parametrize("env_id, text", [("genex/OccludedCrosswalk-v0", False), ("genex/SettingsTabs-v0", False),
                                          ("genex/SettingsTabs-v0", True)])
def test_short_ppo_run_trains_and_acts(env_id, text, one_torch_thread):
    pytest.importorskip("stable_baselines3")
    from stable_baselines3 import PPO

    env = make_rl_env(env_id, text=text)
    try:
        # the default NatureCNN (frames are 64x64 driving, 128x128 GUI: above its 36x36 minimum), kept small
        model = PPO("MultiInputPolicy" if text else "CnnPolicy", env, n_steps=64, batch_size=32, n_epochs=2, seed=0, device="cpu",
                    policy_kwargs=dict(features_extractor_kwargs=dict(cnn_output_dim=64) if text else
                                       dict(features_dim=64), net_arch=[32]))
        model.learn(256)
        obs, info = env.reset(seed=7)
        for t in range(env.unwrapped.config.max_steps):
            action, _ = model.predict(obs, deterministic=True)
            assert env.action_space.contains(int(action)) and np.shape(action) == ()
            obs, reward, terminated, truncated, info = env.step(action)
            assert env.observation_space.contains(obs) and np.isfinite(reward)
            if terminated or truncated:
                break
        assert terminated or truncated
    finally:
        env.close()
