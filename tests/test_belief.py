"""Belief updates (log-odds, real vs imagined evidence), decisions by expected cost, and scores."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from genex.belief import (Belief, brier_score, expected_calibration_error, log_loss, reliability_table,
                          score_beliefs)


@dataclass(frozen=True)
class Q:
    id: str
    answers: tuple[str, ...]


YN = Q("ped", ("yes", "no"))
TABS = Q("tab", ("tab 1", "tab 2", "tab 3", "tab 4"))


def test_uniform_prior_and_custom_prior():
    b = Belief([YN, TABS], priors={"ped": [0.3, 0.7]})
    np.testing.assert_allclose(b.probs("ped"), [0.3, 0.7])
    np.testing.assert_allclose(b.probs("tab"), [0.25] * 4)
    with pytest.raises(KeyError, match="unknown questions"):
        Belief([YN], priors={"nope": [0.5, 0.5]})
    with pytest.raises(ValueError, match="sum to 1"):
        Belief([YN], priors={"ped": [0.5, 0.7]})


def test_log_odds_update_is_additive_bayes():
    b = Belief([YN], priors={"ped": [0.2, 0.8]})
    b.update_real("ped", [0.9, 0.1])
    # prior odds 0.25, likelihood ratio 9 -> posterior odds 2.25
    assert b["ped"].log_odds("yes") == pytest.approx(np.log(2.25))
    b.update_real("ped", [0.9, 0.1])
    assert b["ped"].log_odds(0) == pytest.approx(np.log(0.25 * 81))


@pytest.mark.parametrize("p_yes", [0.6, 0.7, 0.9, 0.99])
def test_monotonic_in_evidence_strength_and_count(p_yes):
    weaker = Belief([YN])
    stronger = Belief([YN])
    weaker.update_real("ped", [p_yes - 0.05, 1 - p_yes + 0.05])
    stronger.update_real("ped", [p_yes, 1 - p_yes])
    assert stronger.probs("ped")[0] > weaker.probs("ped")[0] > 0.5
    history = []
    b = Belief([YN])
    for _ in range(5):
        b.update_real("ped", [p_yes, 1 - p_yes])
        history.append(b.probs("ped")[0])
    assert all(x < y for x, y in zip(history, history[1:]))
    b.update_real("ped", [1 - p_yes, p_yes])  # contrary evidence lowers it
    assert b.probs("ped")[0] < history[-1]


def test_uninformative_evidence_changes_nothing():
    b = Belief([TABS], priors={"tab": [0.1, 0.2, 0.3, 0.4]})
    b.update_real("tab", [0.25] * 4)
    b.update_imagined("tab", [[0.25] * 4] * 3, trust=0.8)
    np.testing.assert_allclose(b.probs("tab"), [0.1, 0.2, 0.3, 0.4])


def test_clipping_keeps_belief_revisable():
    b = Belief([YN], eps=1e-3)
    b.update_real("ped", [1.0, 0.0])
    assert 0.99 < b.probs("ped")[0] < 1.0
    b.update_real("ped", [0.0, 1.0])
    np.testing.assert_allclose(b.probs("ped"), [0.5, 0.5])


def test_trust_weight_bounds():
    ev = [[0.9, 0.1]]
    zero, half, one, real = Belief([YN]), Belief([YN]), Belief([YN]), Belief([YN])
    zero.update_imagined("ped", ev, trust=0.0)
    half.update_imagined("ped", ev, trust=0.5)
    one.update_imagined("ped", ev, trust=1.0)
    real.update_real("ped", ev[0])
    np.testing.assert_allclose(zero.probs("ped"), [0.5, 0.5])
    assert 0.5 < half.probs("ped")[0] < one.probs("ped")[0]
    np.testing.assert_allclose(one.probs("ped"), real.probs("ped"))
    assert half["ped"].log_odds() == pytest.approx(0.5 * one["ped"].log_odds())
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="trust"):
            Belief([YN]).update_imagined("ped", ev, trust=bad)
    with pytest.raises(ValueError, match="weight"):
        Belief([YN]).update_real("ped", ev[0], weight=2.0)


def test_imagined_samples_are_averaged_not_summed():
    one, many = Belief([YN]), Belief([YN])
    one.update_imagined("ped", [[0.8, 0.2]], trust=0.5)
    many.update_imagined("ped", [[0.8, 0.2]] * 16, trust=0.5)
    np.testing.assert_allclose(one.probs("ped"), many.probs("ped"))
    mixed = Belief([YN])
    mixed.update_imagined("ped", [[0.8, 0.2], [0.2, 0.8]], trust=1.0)  # disagreeing samples cancel
    np.testing.assert_allclose(mixed.probs("ped"), [0.5, 0.5])
    assert many["ped"].n_imagined == 16


def test_update_from_images_weights_real_once_each_and_imagined_by_trust():
    b = Belief([YN])
    probs = np.array([[0.9, 0.1], [0.7, 0.3], [0.7, 0.3]])
    b.update_from_images("ped", probs, imagined=[False, True, True], trust=0.5)
    expected = np.log(0.9 / 0.1) + 0.5 * np.log(0.7 / 0.3)
    assert b["ped"].log_odds() == pytest.approx(expected)
    assert (b["ped"].n_real, b["ped"].n_imagined) == (1, 2)


def test_bad_evidence_is_a_clear_error():
    b = Belief([YN, TABS])
    with pytest.raises(ValueError, match="2 answers"):
        b.update_real("ped", [0.2, 0.3, 0.5])
    with pytest.raises(ValueError, match=">= 0"):
        b.update_real("ped", [-0.1, 1.1])
    with pytest.raises(KeyError, match="unknown question"):
        b.update_real("nope", [0.5, 0.5])


def test_decide_by_expected_cost():
    # actions: go, brake. go costs 10 if a pedestrian crosses, brake costs 1 always
    costs = {"ped": np.array([[10.0, 0.0], [1.0, 1.0]])}
    b = Belief([YN], priors={"ped": [0.05, 0.95]})
    np.testing.assert_allclose(b.expected_costs(costs), [0.5, 1.0])
    assert b.decide(costs) == 0
    b.update_real("ped", [0.8, 0.2])
    assert b.decide(costs) == 1
    with pytest.raises(ValueError, match="shape"):
        b.expected_costs({"ped": np.ones((2, 3))})


def test_costs_sum_over_questions():
    b = Belief([YN, TABS])
    c = b.expected_costs({"ped": np.zeros((4, 2)), "tab": np.eye(4)})
    np.testing.assert_allclose(c, [0.25] * 4)


def test_brier_and_log_loss_values():
    p = np.array([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]])
    t = np.array([0, 0, 0])
    assert brier_score(p, t) == pytest.approx((0 + 0.5 + 2) / 3)
    assert log_loss(p[:2], t[:2]) == pytest.approx(np.log(2) / 2)
    assert np.isfinite(log_loss(p, t))  # clipped, not inf
    assert brier_score([0.7], [0]) == pytest.approx(2 * 0.09)  # binary shorthand
    with pytest.raises(ValueError, match="indices"):
        brier_score(p, [0, 1, 2])


def test_ece_is_zero_when_calibrated_and_detects_overconfidence():
    rng = np.random.default_rng(0)
    conf = rng.uniform(0.5, 1.0, size=20000)
    truth = (rng.uniform(size=conf.size) > conf).astype(int)  # answer 0 true with probability conf
    p = np.stack([conf, 1 - conf], 1)
    assert expected_calibration_error(p, truth) < 0.02
    overconfident = np.stack([np.full(conf.size, 0.99), np.full(conf.size, 0.01)], 1)
    acc = np.mean(truth == 0)
    assert expected_calibration_error(overconfident, truth) == pytest.approx(0.99 - acc, abs=1e-9)
    rows = reliability_table(p, truth, n_bins=5)
    assert sum(r["count"] for r in rows) == conf.size


def test_ece_hand_computed():
    p = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.6, 0.4]])
    t = np.array([0, 1, 0, 0])  # bin 0.9: acc 0.5; bin 0.6: acc 1.0
    assert expected_calibration_error(p, t, n_bins=10) == pytest.approx(0.5 * 0.4 + 0.5 * 0.4)


def test_score_beliefs_and_per_belief_score():
    b1, b2 = Belief([YN]), Belief([YN])
    b1.update_real("ped", [0.9, 0.1])
    b2.update_real("ped", [0.2, 0.8])
    out = score_beliefs([b1, b2], [{"ped": 0}, {"ped": 1}])
    assert out["ped"]["brier"] == pytest.approx(np.mean([2 * 0.1 ** 2, 2 * 0.2 ** 2]))
    assert set(out["ped"]) == {"brier", "log_loss", "ece", "n"}
    assert b1.score({"ped": 0})["ped"]["log_loss"] == pytest.approx(-np.log(0.9))
    assert b1.as_dict()["ped"] == pytest.approx([0.9, 0.1])


def test_reliability_per_answer_pools_every_answer():
    from genex.belief import reliability_table

    probs = np.array([[0.25, 0.25, 0.25, 0.25]] * 8)  # uniform over 4: calibrated, top answer a tie
    truth = np.array([0, 1, 2, 3] * 2)
    top = [r for r in reliability_table(probs, truth) if r["count"]]
    assert top[0]["accuracy"] == 0.25 and top[0]["count"] == 8
    rows = [r for r in reliability_table(probs, truth, per_answer=True) if r["count"]]
    assert len(rows) == 1 and rows[0]["count"] == 32 and rows[0]["confidence"] == rows[0]["accuracy"] == 0.25
