"""GUI envs: Gymnasium contract, determinism, vector envs, bad input, snapshots, labels."""

from __future__ import annotations

import json
import pickle
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import genex.envs.gui as gui
from genex.envs.gui import actions as A
from genex.envs.spec import EnvSnapshot, HiddenStateEnv, SnapshotMismatchError, validate_action_costs

gui.register_gui_envs()
IDS = gui.GUI_ENV_IDS


def make(env_id, **kw):
    return gym.make(env_id, **kw).unwrapped


def random_actions(env, n, seed):
    space = env.action_space
    space.seed(seed)
    return [space.sample() for _ in range(n)]


def rollout(env, actions, seed):
    """Frames, rewards and infos of ``actions`` from ``reset(seed)``; stops at the episode's end."""
    obs, info = env.reset(seed=seed)
    frames, rewards, infos = [obs["image"]], [], [info]
    for a in actions:
        obs, r, term, trunc, info = env.step(a)
        frames.append(obs["image"]), rewards.append(r), infos.append(info)
        if term or trunc:
            break
    return frames, rewards, infos


def test_registration_is_idempotent():
    gui.register_gui_envs()
    assert len(IDS) == 5 and all(i in gym.registry for i in IDS)


@pytest.mark.parametrize("env_id", IDS)
@pytest.mark.parametrize("kw", [{}, {"action_mode": "element", "accessibility": True, "render_mode": "rgb_array"}])
def test_check_env(env_id, kw):
    env = make(env_id, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the checker's warnings count as failures
        check_env(env)
    assert isinstance(env, HiddenStateEnv)
    validate_action_costs(env.questions, env.action_costs, len(env.action_names))
    for q in env.questions:
        assert env.action_costs[q.id].dtype == np.float32


@pytest.mark.parametrize("env_id", IDS)
def test_same_seed_same_screens(env_id):
    env_a, env_b = make(env_id), make(env_id)
    actions = random_actions(env_a, 25, seed=3)
    fa, ra, ia = rollout(env_a, actions, seed=11)
    fb, rb, ib = rollout(env_b, actions, seed=11)
    assert len(fa) == len(fb) and all(np.array_equal(x, y) for x, y in zip(fa, fb))
    assert ra == rb and ia[-1] == ib[-1]
    firsts = {make(env_id).reset(seed=s)[0]["image"].tobytes() for s in range(4)}
    assert len(firsts) > 1  # seeds change the app


@pytest.mark.parametrize("env_id", IDS)
def test_spaces_and_info(env_id):
    env = make(env_id, accessibility=True)
    obs, info = env.reset(seed=0)
    assert obs["image"].shape == (128, 128, 3) and obs["image"].dtype == np.uint8
    assert obs in env.observation_space
    for key in ("hidden", "answers", "visible", "irreversible_errors", "success", "t", "question_text",
                "answer_labels", "n_elements", "invalid_action"):
        assert key in info
    assert set(info["answers"]) == {q.id for q in env.questions}
    for q in env.questions:
        assert 0 <= info["answers"][q.id] < len(q.answers)
        assert len(info["answer_labels"][q.id]) == len(q.answers)
    assert all(isinstance(v, bool) for v in info["visible"].values())
    assert set(env.app.facts) <= set(info["visible"])
    tree = json.loads(obs["accessibility"])
    elements = sorted(e["element"] for e in tree if e["element"] is not None)
    assert elements == list(range(info["n_elements"]))
    for e in tree:
        x, y, w, h = e["bbox"]
        assert 0 <= x and 0 <= y and x + w <= 128 and y + h <= 128
        assert set(e) == {"role", "label", "state", "bbox", "element"}


def test_visibility_labels_follow_the_widget_tree():
    env = make("genex/SettingsTabs-v0")
    for seed in range(6):
        obs, info = env.reset(seed=seed)
        h = info["hidden"]
        assert all(info["visible"][f"label:{name}"] for name in h["tabs"])  # tab names always show
        on_first_tab = h["target_tab"] == 0
        assert info["visible"]["target"] == on_first_tab == info["visible"][f"label:{h['target']}"]
        assert not info["visible"]["target_on"]
        if not on_first_tab:
            obs, *_, info = env.step(env.choice_action(h["target_tab"]))
            assert info["visible"]["target"] and not info["visible"]["target_on"]
            assert not info["visible"][f"label:{h['tabs'][list(h['tabs'])[0]][0]}"]  # first tab's rows are gone


def test_screen_sizes_and_human_render():
    env = make("genex/TicketShop-v0", screen_size=64, render_size=300)
    env.render_mode = "rgb_array"
    obs, _ = env.reset(seed=0)
    assert obs["image"].shape == (64, 64, 3)
    assert env.render().shape == (300, 300, 3)
    env = gym.make("genex/TicketShop-v0", render_mode="rgb_array")
    obs, _ = env.reset(seed=0)
    view = env.render()
    assert view.shape == (512, 512, 3) and view.dtype == np.uint8
    upscaled = np.kron(obs["image"], np.ones((4, 4, 1), np.uint8))
    assert not np.array_equal(view, upscaled)  # re-rendered, not just upscaled
    assert len(np.unique(view.reshape(-1, 3), axis=0)) > len(np.unique(obs["image"].reshape(-1, 3), axis=0))


@pytest.mark.parametrize("mode,vector_kwargs", [("sync", {}), ("async", {"context": "spawn"})])
def test_vector_envs(mode, vector_kwargs):
    envs = gym.make_vec("genex/SettingsTabs-v0", num_envs=2, vectorization_mode=mode, vector_kwargs=vector_kwargs)
    try:
        obs, info = envs.reset(seed=[5, 6])
        single = [make("genex/SettingsTabs-v0").reset(seed=s)[0] for s in (5, 6)]
        assert obs["image"].shape == (2, 128, 128, 3)
        assert np.array_equal(obs["image"][1], single[1]["image"])
        assert tuple(obs["text"]) == tuple(o["text"] for o in single)  # real instructions, not stale buffers
        envs.action_space.seed(0)
        for _ in range(5):
            obs, reward, term, trunc, info = envs.step(envs.action_space.sample())
        assert reward.shape == (2,) and obs["image"].shape == (2, 128, 128, 3)
        assert all(t.startswith("Turn on ") for t in obs["text"])
    finally:
        envs.close()


# ------------------------------------------------------------------------------------------ bad input
def test_unknown_options_raise_clear_errors():
    with pytest.raises(ValueError, match="unknown option.*colour.*valid options"):
        gym.make("genex/SettingsTabs-v0", colour="red")
    with pytest.raises(ValueError, match="action_mode must be one of"):
        gym.make("genex/SettingsTabs-v0", action_mode="mouse")
    with pytest.raises(ValueError, match="screen_size must be an integer"):
        gym.make("genex/SettingsTabs-v0", screen_size=7)
    with pytest.raises(ValueError, match="max_steps must be a positive integer"):
        gym.make("genex/SettingsTabs-v0", max_steps=0)
    with pytest.raises(ValueError, match="tab_layout must be one of"):
        gym.make("genex/SettingsTabs-v0", tab_layout="alphabetical")
    with pytest.raises(ValueError, match="unknown GUI app"):
        gui.env.GuiEnv("Paint")
    env = make("genex/SettingsTabs-v0")
    with pytest.raises(ValueError, match="takes no options"):
        env.reset(seed=0, options={"difficulty": 2})


def test_bad_actions_raise_clear_errors():
    env = make("genex/EditDocument-v0")
    with pytest.raises(RuntimeError, match="reset"):
        env.step(A.wait())
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"outside the 128x128 screen.*\[0, 127\]"):
        env.step(A.click(128, 5))
    with pytest.raises(ValueError, match="outside"):
        env.step(A.click(-1, 5))
    with pytest.raises(ValueError, match="cannot draw.*printable ASCII"):
        env.step(A.type_text("Zoë"))
    with pytest.raises(ValueError, match="at most 32"):
        env.step(A.type_text("x" * 40))
    with pytest.raises(ValueError, match="unknown action field"):
        env.step({"type": 0, "x": 1, "y": 1, "element": 3})
    with pytest.raises(ValueError, match="dicts such as"):
        env.step(3)
    with pytest.raises(ValueError, match="'type' must be in"):
        env.step({"type": 9})
    with pytest.raises(ValueError, match="unknown key 'ctrl'"):
        env.step({"type": 2, "key": "ctrl"})
    with pytest.raises(ValueError, match="must be an integer"):
        env.step({"type": 0, "x": 1.5, "y": 2})
    assert env.step({"type": 2, "key": "tab"})[4]["t"] == 1  # key names and left-out fields are fine


def test_documented_no_ops():
    env = make("genex/SettingsTabs-v0", action_mode="element")
    obs, info = env.reset(seed=0)
    n = info["n_elements"]
    obs2, r, term, trunc, info2 = env.step(A.click_element(n))  # past the visible elements
    assert info2["invalid_action"] and np.array_equal(obs["image"], obs2["image"]) and r == pytest.approx(-0.01)
    obs3, *_, info3 = env.step(A.type_text("hello", mode="element", element=n))  # no text field has focus
    assert info3["invalid_action"] and np.array_equal(obs["image"], obs3["image"])
    env = make("genex/SettingsTabs-v0")
    obs, info = env.reset(seed=0)
    obs2, *_, info2 = env.step(A.scroll(5, 5))  # nothing scrolls there
    assert info2["invalid_action"] and np.array_equal(obs["image"], obs2["image"])


def test_episode_end_and_truncation():
    env = make("genex/FileManager-v0", max_steps=3)
    env.reset(seed=0)
    for t in range(3):
        *_, term, trunc, info = env.step(A.wait())
    assert trunc and not term and info["t"] == 3
    with pytest.raises(RuntimeError, match="ended"):
        env.step(A.wait())


# ------------------------------------------------------------------------------------------ snapshots
@pytest.mark.parametrize("env_id", IDS)
def test_snapshot_restore_round_trip(env_id):
    env = make(env_id)
    env.reset(seed=4)
    for a in random_actions(env, 4, seed=1):
        obs, *_, term, trunc, info = env.step(a)
        if term or trunc:
            obs, info = env.reset(seed=5)
    snap = pickle.loads(pickle.dumps(env.snapshot()))  # snapshots travel between processes
    assert isinstance(snap, EnvSnapshot)
    after = random_actions(env, 6, seed=2)
    first = []
    for a in after:
        step = env.step(a)
        first.append(step)
        if step[2] or step[3]:
            break
    obs_r, info_r = env.restore(snap)
    assert np.array_equal(obs_r["image"], obs["image"]) and info_r["t"] == info["t"]
    for a, (o, r, term, trunc, i) in zip(after, first):
        o2, r2, term2, trunc2, i2 = env.step(a)
        assert np.array_equal(o["image"], o2["image"]) and (r, term, trunc) == (r2, term2, trunc2) and i == i2


def test_restore_across_apps_or_configs_raises():
    settings, files = make("genex/SettingsTabs-v0"), make("genex/FileManager-v0")
    settings.reset(seed=0), files.reset(seed=0)
    with pytest.raises(SnapshotMismatchError, match="SettingsTabs"):
        files.restore(settings.snapshot())
    small = make("genex/SettingsTabs-v0", screen_size=64)
    small.reset(seed=0)
    with pytest.raises(SnapshotMismatchError, match="different config"):
        small.restore(settings.snapshot())
    with pytest.raises(TypeError, match="EnvSnapshot"):
        settings.restore({"state": 1})


def test_snapshot_is_isolated_from_the_live_env():
    env = make("genex/EditDocument-v0")
    env.reset(seed=1)
    snap = env.snapshot()
    env.step(env.intent_action(env.app.expert_intent(env.screen)))
    env.step(env.intent_action(env.app.expert_intent(env.screen)))
    obs, info = env.restore(snap)
    assert info["t"] == 0 and info["hidden"]["values"] == info["hidden"]["original"]


def test_visible_key_order_does_not_depend_on_the_hidden_tab():
    """info["visible"] keys are sorted, so their order cannot give away which tab holds the target."""
    import genex.envs  # noqa: F401

    env = gym.make("genex/SettingsTabs-v0")
    for seed in range(10):
        _, info = env.reset(seed=seed)
        dynamic = [k for k in info["visible"] if k.startswith(("label:", "on:"))]
        labels = [k for k in dynamic if k.startswith("label:")]
        ons = [k for k in dynamic if k.startswith("on:")]
        assert labels == sorted(labels) and ons == sorted(ons)


def test_type_with_element_out_of_range_is_rejected():
    import genex.envs  # noqa: F401

    env = gym.make("genex/SettingsTabs-v0", action_mode="element")
    env.reset(seed=0)
    with pytest.raises(ValueError, match="element"):
        env.unwrapped.step({"type": 1, "text": "hi", "element": -1})


def test_edit_document_macro_reaches_fields_scrolled_out_of_view():
    """Scroll down first (Name leaves the view), then "edit name and phone", then save: success, not an error."""
    env = make("genex/EditDocument-v0")
    _, info = env.reset(seed=200005)  # Name in the first row, Phone below the fold
    app = env.unwrapped.app
    assert app.state.order.index("Name") == 0 and info["hidden"]["phone_below_fold"]
    for choice in (1, 1, 0):  # scroll down (twice where possible), then edit until the macro is done
        while (a := env.unwrapped.choice_action(choice)) is not None:
            _, _, term, trunc, info = env.step(a)
            assert not (term or trunc)
            if choice == 1:
                break
    assert app.state.values["Name"].value == app.state.new_name
    assert app.state.values["Phone"].value == app.state.new_phone
    _, reward, term, _, info = env.step(env.unwrapped.choice_action(2))
    assert term and info["success"] and info["irreversible_errors"] == 0


def test_settings_tab_layouts():
    """Grouped: a tab name always holds the same settings in the same order (what a world model can learn);
    random: the same tab name holds different settings in different episodes (nothing visible tells)."""
    from genex.envs.gui.settings_tabs import GROUPS

    def pages(layout: str) -> dict[str, set[tuple[str, ...]]]:
        env = make("genex/SettingsTabs-v0", tab_layout=layout)
        seen: dict[str, set[tuple[str, ...]]] = {}
        for seed in range(40):
            _, info = env.reset(seed=seed)
            h = info["hidden"]
            assert h["target"] in h["tabs"][h["target_tab_name"]] and not h["target_on"]
            for name, tab in h["tabs"].items():
                seen.setdefault(name, set()).add(tuple(tab))
        return seen

    grouped = pages("grouped")
    assert set(grouped) == set(GROUPS)  # every tab shows up over 40 seeds
    assert all(pages_ == {tuple(s.rstrip("*") for s in GROUPS[n])} for n, pages_ in grouped.items())
    assert any(len(p) > 1 for p in pages("random").values())
    assert gym.make("genex/SettingsTabs-v0").unwrapped.config.tab_layout == "grouped"


def test_describe_action_names_the_clicked_widget_and_the_env_ignores_labels():
    env = gym.make("genex/SettingsTabs-v0")
    env.reset(seed=3)
    u = env.unwrapped
    for k in range(1, 4):
        a = u.choice_action(k)
        assert u.describe_action(a) == u.app.state.tab_names[k]  # "open tab k" clicks the tab's name
    assert u.describe_action({"type": 1, "text": "x"}) == ""  # typing targets no widget by itself
    a = u.choice_action(2)
    with_label = env.step({**a, "label": "anything"})[0]["image"]
    env.reset(seed=3)
    np.testing.assert_array_equal(env.step(a)[0]["image"], with_label)
    with pytest.raises(ValueError, match="unknown action field"):
        env.step({**a, "lable": "typo"})


def test_mail_compose_buttons_do_what_their_glyph_says_and_the_screen_never_names_them():
    from genex.envs.gui.mail_compose import FUNCTIONS, GOALS

    env = make("genex/MailCompose-v0", action_mode="element", accessibility=True)
    goals, slots = set(), set()
    for seed in range(12):
        obs, info = env.reset(seed=seed)
        icons, goal = info["hidden"]["icons"], info["hidden"]["goal"]
        goals.add(goal), slots.add(icons.index(goal))
        assert obs["text"] == GOALS[goal] and sorted(icons) == sorted(FUNCTIONS)
        tree = json.loads(obs["accessibility"])
        buttons = [w for w in tree if w["role"] == "button"]
        # glyphs only; their accessible names describe the picture, never the action
        assert [w["label"] for w in buttons] == [FUNCTIONS[fn] for fn in icons]
        assert [env.describe_action(env.choice_action(k)) for k in range(4)] == [FUNCTIONS[fn] for fn in icons]
        assert not {"save", "print", "send", "delete"} & {w["label"].lower() for w in tree}
        first = obs["image"]
        snap = env.snapshot()
        for k, fn in enumerate(icons):
            env.restore(snap)
            obs, r, term, trunc, info = env.step(env.choice_action(k))
            assert info["visible"]["target"] == (fn == goal)
            if fn in ("send", "delete"):  # one click, no confirmation, no undo
                assert term and info["irreversible_errors"] == 1 and r < -0.5
            elif fn == goal:
                assert term and info["success"] and r > 0.5
            else:  # the other harmless button: a detour; the next choice closes its dialog first
                assert not term and info["irreversible_errors"] == 0 and env.choice_action(k) is None
                other = (k + 1) % 4
                if fn == "print":
                    assert env.describe_action(env.choice_action(other)) == "Cancel"
                    env.step(env.choice_action(other))
                assert env.choice_action(other) is not None
            assert not np.array_equal(obs["image"], first)
    assert goals == {"save", "print"} and len(slots) >= 3


def test_mail_compose_glyphs_differ_and_the_expert_needs_one_click():
    from genex.envs.gui.widgets import ICONS

    env = make("genex/MailCompose-v0")
    env.reset(seed=0)
    shapes = {name: frozenset(boxes) for name, boxes in ICONS.items()}
    assert len(set(shapes.values())) == len(ICONS)
    for seed in range(20):
        env.reset(seed=seed)
        intent = env.app.expert_intent(env.screen)
        _, _, term, _, info = env.step(env.intent_action(intent))
        assert term and info["success"] and info["t"] == 1
    costs = env.action_costs["target_icon"]
    assert np.allclose(np.diag(costs), 0) and np.allclose(costs[~np.eye(4, dtype=bool)], 7.0)
