"""Scripted GUI users, task outcomes (success, irreversible errors), rewards, action choices, speed."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import genex.envs.gui as gui
from genex.envs.gui import actions as A
from genex.envs.gui.app import Intent
from genex.envs.gui.users import GUI_DRIVERS, GuiExpert, RandomClicker
from genex.envs.spec import ScriptedDriver

gui.register_gui_envs()
IDS = gui.GUI_ENV_IDS
STEP, SUCCESS, ERROR, DAWDLE = 0.01, 1.0, 1.0, 0.05


def make(env_id, **kw):
    return gym.make(env_id, **kw).unwrapped


def do(env, kind, target="", **kw):
    """Step ``env`` with a widget-level intent (click a widget by id, type, key, scroll)."""
    return env.step(env.intent_action(Intent(kind, target, **kw)))


def run_driver(env, driver, seed, limit=100):
    obs, info = env.reset(seed=seed)
    driver.reset(env, seed)
    total = 0.0
    for _ in range(limit):
        action = driver.act(obs, info)
        assert action in env.action_space
        obs, r, term, trunc, info = env.step(action)
        total += r
        if term or trunc:
            return total, term, info
    raise AssertionError("episode did not end")


def test_driver_registry_follows_the_protocol():
    assert set(GUI_DRIVERS) == {"random", "expert"}
    for name, factory in GUI_DRIVERS.items():
        driver = factory()
        assert isinstance(driver, ScriptedDriver) and driver.name == name
    with pytest.raises(ValueError, match="probabilities"):
        RandomClicker(p=(1.0, 0.0))


@pytest.mark.parametrize("env_id", IDS)
@pytest.mark.parametrize("mode", ["pixel", "element"])
def test_expert_succeeds(env_id, mode):
    env = make(env_id, action_mode=mode)
    for seed in range(5):
        total, terminated, info = run_driver(env, GuiExpert(), seed)
        assert terminated and info["success"] and info["irreversible_errors"] == 0
        assert total == pytest.approx(SUCCESS - STEP * info["t"])  # the expert never dawdles


@pytest.mark.parametrize("env_id", IDS)
def test_random_clicker_acts_in_the_space(env_id):
    for mode in ("pixel", "element"):
        env = make(env_id, action_mode=mode, max_steps=15)
        total, _, info = run_driver(env, RandomClicker(), seed=0)
        assert info["t"] <= 15 and np.isfinite(total)


def _end(step):
    obs, reward, terminated, truncated, info = step
    return reward, terminated, info


def test_settings_reset_is_an_irreversible_error():
    env = make("genex/SettingsTabs-v0")
    env.reset(seed=0)
    reward, terminated, info = _end(do(env, "click", "reset"))
    assert terminated and not info["success"] and info["irreversible_errors"] == 1
    assert reward == pytest.approx(-STEP - ERROR)
    assert not any(v for k, v in info["visible"].items() if k.startswith("on:"))  # everything was reset


def test_settings_other_toggles_are_reversible():
    env = make("genex/SettingsTabs-v0")
    obs, info = env.reset(seed=2)
    target = info["hidden"]["target"]
    other = next(w for w in env.screen.elements() if w.id.startswith("setting:") and w.label != target)
    before = info["visible"]
    _, _, _, _, info = do(env, "click", other.id)
    assert info["visible"][f"on:{other.label}"] != before[f"on:{other.label}"]
    obs, reward, terminated, _, info = do(env, "click", other.id)
    assert not terminated and info["irreversible_errors"] == 0 and info["visible"] == before


def test_edit_document_saving_wrong_data_is_an_irreversible_error():
    env = make("genex/EditDocument-v0")
    obs, info = env.reset(seed=0)
    _, _, info = _end(do(env, "click", "save"))
    assert info["status"] == "No changes to save" and info["irreversible_errors"] == 0
    name_row = info["hidden"]["name_slot"]
    while env.screen.find("field:Name") is None:
        do(env, "scroll", "form", down=name_row > 0)
    do(env, "click", "field:Name")
    do(env, "type", text="Wrong Person")
    reward, terminated, info = _end(do(env, "click", "save"))
    assert terminated and not info["success"] and info["irreversible_errors"] == 1
    assert reward == pytest.approx(-STEP - ERROR) and "irreversible" in info["status"]


def test_edit_document_invalid_phone_opens_a_dialog():
    env = make("genex/EditDocument-v0")
    env.reset(seed=3)
    while env.screen.find("field:Phone") is None:
        do(env, "scroll", "form", down=True)
    do(env, "click", "field:Phone")
    do(env, "key", key="backspace")  # the selection: the field is now empty
    _, terminated, info = _end(do(env, "click", "save"))
    assert not terminated and info["visible"]["error_dialog"] and info["n_elements"] == 1
    _, _, info = _end(do(env, "key", key="escape"))
    assert not info["visible"]["error_dialog"]


def test_ticket_shop_wrong_buy_and_dawdling():
    env = make("genex/TicketShop-v0")
    obs, info = env.reset(seed=0)
    city = info["hidden"]["city"]
    wrong = next(i for i, t in enumerate(info["hidden"]["trips"]) if t["city"] != city)
    while env.screen.find(f"trip:{wrong}") is None:
        do(env, "scroll", "trips", down=True)
    do(env, "click", f"trip:{wrong}")
    reward, terminated, info = _end(do(env, "click", "dialog:buy"))
    assert terminated and info["irreversible_errors"] == 1 and reward == pytest.approx(-STEP - ERROR)

    obs, info = env.reset(seed=0)
    right = info["hidden"]["affordable_trip"]
    rewards = []
    while env.screen.find(f"trip:{right}") is None:
        rewards.append(do(env, "scroll", "trips", down=True)[1])
    _, r, _, _, info = do(env, "click", f"trip:{right}")
    assert info["visible"]["affordable_details"] and r == pytest.approx(-STEP)  # finding it is free
    for _ in range(3):
        assert env.step(A.wait())[1] == pytest.approx(-STEP - DAWDLE)
    reward, terminated, info = _end(do(env, "click", "dialog:buy"))
    assert terminated and info["success"] and reward == pytest.approx(SUCCESS - STEP)


def test_file_manager_delete_wrong_file_and_archive():
    env = make("genex/FileManager-v0")
    obs, info = env.reset(seed=0)
    target = info["hidden"]["target"]
    first = env.app.state.selected
    assert first is not None and first != target
    do(env, "click", "archive")  # reversible: the file moves to the Archive and back
    do(env, "click", "folder:archive")
    do(env, "click", f"file:{first}")
    _, _, _, _, info = do(env, "click", "archive")
    assert info["status"] == f"Restored {first}" and info["irreversible_errors"] == 0
    do(env, "click", "folder:0")
    do(env, "click", f"file:{first}")
    _, terminated, info = _end(do(env, "click", "delete"))
    assert not terminated and info["visible"]["confirm_dialog"] and not info["visible"]["confirm_target"]
    _, _, info = _end(do(env, "click", "dialog:cancel"))
    assert not info["visible"]["confirm_dialog"]
    do(env, "click", "delete")
    reward, terminated, info = _end(do(env, "click", "dialog:delete"))
    assert terminated and info["irreversible_errors"] == 1 and reward == pytest.approx(-STEP - ERROR)
    assert first in info["hidden"]["deleted"]


@pytest.mark.parametrize("env_id,finish", [
    ("genex/SettingsTabs-v0", None),
    ("genex/FileManager-v0", None),  # "find and delete in folder k" deletes the target itself
    ("genex/TicketShop-v0", "buy listing {k}"),
])
def test_action_choices_carry_out_the_right_decision(env_id, finish):
    env = make(env_id)
    for seed in range(3):
        obs, info = env.reset(seed=seed)
        q = env.questions[0].id
        truth = info["answers"][q]
        best = int(np.argmin(env.action_costs[q][:, truth]))  # the first zero-cost choice under the truth
        assert env.action_costs[q][best].argmin() == truth
        plan = [best] + ([env.action_names.index(finish.format(k=truth + 1))] if finish else [])
        for choice in plan:
            while (a := env.choice_action(choice)) is not None and not info["success"]:
                obs, r, term, trunc, info = env.step(a)
        assert info["success"], (env_id, seed, info["status"])


def test_edit_document_choices():
    env = make("genex/EditDocument-v0")
    for seed in range(6):
        obs, info = env.reset(seed=seed)
        for choice in (0, 1, 0):  # edit what is in view, scroll to the bottom, edit the rest
            while (a := env.choice_action(choice)) is not None:
                obs, r, term, trunc, info = env.step(a)
        h = info["hidden"]
        assert (h["values"]["Name"], h["values"]["Phone"]) == (h["new_name"], h["new_phone"])
        obs, r, term, trunc, info = env.step(env.choice_action(2))
        assert info["success"], (seed, info["status"])
    with pytest.raises(ValueError, match="choice must be in"):
        env.choice_action(3)

