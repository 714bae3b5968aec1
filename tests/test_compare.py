"""genex compare: episodes, resumable JSONL, summaries with CIs, worker processes, CLI, viz."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import genex.compare as comparison
from genex.compare import execute
from genex.cli import main
from genex.compare import CompareConfig, compare, gap_closed, load_rows, summarize, write_summary


def small_cfg(**kw):
    base = dict(envs=["genex/SettingsTabs-v0"], planners=["react", "oracle-imagine"], episodes=3, seed=300)
    base.update(kw)
    return CompareConfig(**base)


def test_compare_writes_rows_traces_and_summary(tmp_path):
    rows = compare(small_cfg(), tmp_path, executor="inline", progress=False)
    assert len(rows) == 6 and len(load_rows(tmp_path / "episodes.jsonl")) == 6
    for r in rows:
        assert {"success", "collision", "return", "steps", "brier", "log_loss", "imagined_per_decision",
                "seconds_per_decision", "answers"} <= set(r)
        body = json.loads((tmp_path / "traces" / "SettingsTabs-v0" / r["planner"] / f"seed_{r['seed']}.json").read_text())
        assert len(body["decisions"]) == r["decisions"] >= 1
    by = {(r["planner"], r["seed"]): r for r in rows}
    for seed in (300, 301, 302):  # the oracle's imagination never needs more real steps than react's search
        assert by[("oracle-imagine", seed)]["steps"] <= by[("react", seed)]["steps"]
        assert by[("oracle-imagine", seed)]["imagined_per_decision"] > 0 == by[("react", seed)]["imagined_per_decision"]
    text = write_summary(rows, tmp_path, ["react", "oracle-imagine"])
    assert "| SettingsTabs-v0 | react | 3 |" in text
    for f in ("summary.md", "summary.csv", "bars.png", "compute.png"):
        assert (tmp_path / f).stat().st_size > 0


def test_resume_refuses_episodes_from_other_weights(tmp_path):
    """Retrained weights in the same checkpoint folder: resuming would put two models' episodes in one table."""
    import shutil

    from genex.planners import default_checkpoint

    policy = tmp_path / "policy"
    shutil.copytree(default_checkpoint("policy", "gui"), policy)
    cfg = small_cfg(planners=["react"], episodes=1, policy=str(policy))
    compare(cfg, tmp_path / "run", executor="inline", progress=False)
    recorded = json.loads((tmp_path / "run" / "run.json").read_text())["checkpoints"]
    assert set(recorded) == {"tiny:gui"}
    weights = next(policy.glob("*.safetensors"))
    data = weights.read_bytes()
    weights.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))  # "retrained": other bytes, same folder
    with pytest.raises(ValueError, match="other weights.*tiny:gui"):
        compare(small_cfg(planners=["react"], episodes=2, policy=str(policy)), tmp_path / "run", executor="inline",
                progress=False)
    old_rows = (tmp_path / "run" / "episodes.jsonl").read_text()
    # stale="restart" (genex compare --restart-stale, make demo): the old run is moved aside, nothing is lost
    rows = compare(small_cfg(planners=["react"], episodes=2, policy=str(policy)), tmp_path / "run",
                   executor="inline", progress=False, stale="restart")
    assert len(rows) == 2
    aside = list(tmp_path.glob("run.stale-*"))
    assert len(aside) == 1 and (aside[0] / "episodes.jsonl").read_text() == old_rows
    assert json.loads((tmp_path / "run" / "run.json").read_text())["checkpoints"]["tiny:gui"] != recorded["tiny:gui"]
    compare(small_cfg(planners=["react"], episodes=2, policy=str(policy)), tmp_path / "run", executor="inline",
            progress=False, stale="restart")  # same weights now: resumes, nothing moved
    assert len(list(tmp_path.glob("run.stale-*"))) == 1


def test_sampler_settings_count_as_a_checkpoint_change(tmp_path):
    """Same weights, other sampler (config.json's model section): another imagination, so another digest."""
    import shutil

    from genex.planners import default_checkpoint
    from genex.compare import checkpoint_digests

    wm = tmp_path / "wm"
    wm.mkdir()
    src = default_checkpoint("world_model", "gui")
    for name in ("config.json", "fidelity.json"):
        if (src / name).exists():
            shutil.copy(src / name, wm / name)
    (wm / "weights.safetensors").write_bytes(b"stand-in weights")  # digests only: nothing is loaded
    cfg = small_cfg(planners=["imagine"], world_model=str(wm))
    before = checkpoint_digests(cfg)
    meta = json.loads((wm / "config.json").read_text())
    meta["model"]["steps"] += 1
    (wm / "config.json").write_text(json.dumps(meta))
    after = checkpoint_digests(cfg)
    assert after["world_model:gui"] == before["world_model:gui"]  # the weights are the same ...
    assert after["world_model_config:gui"] != before["world_model_config:gui"]  # ... the sampler is not


def test_restart_stale_moves_runs_without_recorded_checkpoints_aside(tmp_path):
    cfg = small_cfg(planners=["react"], episodes=1)
    compare(cfg, tmp_path / "run", executor="inline", progress=False)
    run_json = json.loads((tmp_path / "run" / "run.json").read_text())
    del run_json["checkpoints"]  # a run from before run.json recorded its weights
    (tmp_path / "run" / "run.json").write_text(json.dumps(run_json))
    compare(cfg, tmp_path / "run", executor="inline", progress=False, stale="restart")
    compare(cfg, tmp_path / "run", executor="inline", progress=False, stale="restart")  # now known: resumes
    assert len(list(tmp_path.glob("run.stale-*"))) == 1
    (tmp_path / "run" / "run.json").write_text("{torn")
    with pytest.raises(ValueError, match="not valid JSON"):
        compare(cfg, tmp_path / "run", executor="inline", progress=False)
    compare(cfg, tmp_path / "run", executor="inline", progress=False, stale="restart")  # same second: own name
    assert len(list(tmp_path.glob("run.stale-*"))) == 2


def test_interrupted_compare_resumes_without_redoing_episodes(tmp_path, monkeypatch):
    cfg = small_cfg(planners=["react"], episodes=4)
    full = compare(cfg, tmp_path / "full", executor="inline", progress=False)
    # an interrupted run: two finished episodes and a torn third line
    part = tmp_path / "part"
    part.mkdir()
    lines = (tmp_path / "full" / "episodes.jsonl").read_text().splitlines()
    (part / "episodes.jsonl").write_text("\n".join(lines[:2]) + "\n" + lines[2][:25])
    calls = []
    real = execute.run_episode
    monkeypatch.setattr(execute, "run_episode", lambda c, k, out=None: calls.append(k.seed) or real(c, k, out))
    rows = compare(cfg, part, executor="inline", progress=False)
    assert sorted(calls) == [302, 303]
    strip = lambda rs: sorted((r["seed"], r["success"], r["steps"], r["return"]) for r in rs)  # noqa: E731
    assert strip(rows) == strip(full)
    calls.clear()
    compare(cfg, part, executor="inline", progress=False)  # nothing left to do
    assert calls == []
    with pytest.raises(ValueError, match="other settings"):
        compare(small_cfg(planners=["react"], options={"trust": 0.1}), part, executor="inline", progress=False)
    # a setting added to genex after the run started is taken at its default; other values are other settings
    run_json = json.loads((part / "run.json").read_text())
    del run_json["settings"]["options"]["memory"]
    (part / "run.json").write_text(json.dumps(run_json))
    compare(small_cfg(planners=["react"]), part, executor="inline", progress=False)
    with pytest.raises(ValueError, match="memory"):
        compare(small_cfg(planners=["react"], options={"memory": 3}), part, executor="inline", progress=False)
    # a run.json without the checkpoints its episodes used cannot be resumed into: unknown weights would mix
    run_json = json.loads((part / "run.json").read_text())
    del run_json["checkpoints"]
    (part / "run.json").write_text(json.dumps(run_json))
    with pytest.raises(ValueError, match="does not record the checkpoints"):
        compare(small_cfg(planners=["react"]), part, executor="inline", progress=False)


def test_worker_processes_match_inline(tmp_path):
    cfg = small_cfg(planners=["react"], episodes=2)
    a = compare(cfg, tmp_path / "a", executor="inline", progress=False)
    b = compare(cfg, tmp_path / "b", executor="process", workers=2, progress=False)
    key = lambda rs: sorted((r["seed"], r["steps"], r["return"], r["brier"]) for r in rs)  # noqa: E731
    assert key(a) == key(b)


def test_ray_executor(tmp_path):
    pytest.importorskip("ray")
    rows = compare(small_cfg(planners=["react"], episodes=2), tmp_path, executor="ray", workers=2, progress=False)
    assert len(rows) == 2


def test_summary_means_and_confidence_intervals():
    rows = [{"env": "e", "planner": "p", "success": s, "collision": False, "return": r, "steps": 10,
             "brier": None, "log_loss": None, "imagined_per_decision": 0, "seconds_per_decision": 0.1}
            for s, r in [(True, 1.0), (False, -1.0), (True, 1.0), (True, 3.0)]]
    (s,) = summarize(rows)
    assert s["n"] == 4 and s["success"] == 0.75
    assert s["success_ci"] == pytest.approx(1.96 * math.sqrt(0.75 * 0.25 / 4))
    assert s["return"] == 1.0 and s["return_ci"] == pytest.approx(1.96 * np.std([1, -1, 1, 3], ddof=1) / 2)
    assert math.isnan(s["brier"])
    summary = [{"env": "e", "planner": p, "success": v} for p, v in
               [("react", 0.6), ("imagine", 0.8), ("oracle-imagine", 1.0)]]
    assert gap_closed(summary) == {"e": pytest.approx(0.5)}
    # paired: imagine ran seeds 0-1 only; react failed there, so unpaired means would flatter imagine
    paired = [{"env": "e", "planner": p, "seed": i, "success": ok} for p, i, ok in
              [("react", 0, False), ("react", 1, False), ("react", 2, True), ("react", 3, True),
               ("imagine", 0, False), ("imagine", 1, True), ("oracle-imagine", 0, True), ("oracle-imagine", 1, True),
               ("oracle-imagine", 2, True), ("oracle-imagine", 3, True)]]
    for r in paired:
        r.update({k: 0.0 for k, _, _ in comparison.METRICS if k != "success"})
    gaps, ns = comparison.paired_gap_closed(paired)
    assert ns == {"e": 2} and gaps["e"] == pytest.approx(0.5)


def test_gap_shares_report_both_references_per_planner():
    """react -> posterior-imagine first (the fair bound), react -> oracle-imagine beside it, each on paired seeds."""
    def rows_of(planner, successes):
        return [{"env": "genex/X-v0", "planner": planner, "seed": i, "success": ok, "return": float(ok),
                 **{k: 0.0 for k, _, _ in comparison.METRICS if k not in ("success", "return")}}
                for i, ok in enumerate(successes)]

    rows = (rows_of("react", [0, 0, 0, 0, 1] * 4) + rows_of("imagine", [1, 0, 0, 0, 1] * 4)
            + rows_of("posterior-imagine", [1, 1, 0, 0, 1] * 4) + rows_of("oracle-imagine", [1, 1, 1, 1, 1] * 4)
            + rows_of("particle", [1, 1, 1]))  # particle ran 3 seeds: shares (and gaps) on those only
    shares = {s["planner"]: s for s in comparison.gap_shares(rows)}
    assert set(shares) == {"imagine", "posterior-imagine", "oracle-imagine", "particle"}
    im = shares["imagine"]
    assert im["success:posterior-imagine"] == pytest.approx(0.5) and im["success:oracle-imagine"] == pytest.approx(0.25)
    assert im["success:posterior-imagine:gap"] == pytest.approx(0.4) and im["success:oracle-imagine:n"] == 20
    assert shares["particle"]["success:oracle-imagine"] == pytest.approx(1.0)
    assert shares["particle"]["success:oracle-imagine:n"] == 3
    assert shares["particle"]["success:oracle-imagine:gap"] == pytest.approx(1.0)  # on its 3 seeds, not all 20
    assert shares["posterior-imagine"]["success:posterior-imagine"] == pytest.approx(1.0)
    table = comparison.format_gap_shares(comparison.gap_shares(rows))
    assert "success: react → posterior-imagine | success: react → oracle-imagine" in table.splitlines()[0]
    assert "| X-v0 | imagine | 50% (gap +40 pts, n=20) | 25% (gap +80 pts, n=20) |" in table
    # one seed in five: a gap within its noise gets no share
    few = rows_of("react", [0, 0, 0, 0, 1]) + rows_of("imagine", [0] * 5) + rows_of("posterior-imagine", [1, 0, 0, 0, 1])
    assert "– (gap +20 ± 39 pts: within noise, n=5)" in comparison.format_gap_shares(comparison.gap_shares(few))
    no_gap = comparison.format_gap_shares(comparison.gap_shares(rows_of("react", [1, 1]) + rows_of("oracle-imagine", [1, 1])))
    assert "n/a" in no_gap and "– (no gap, n=2)" in no_gap


def test_paired_against_compares_steps_only_where_both_solve():
    """A planner that fails on a seed must not be credited with that seed's steps; errors are paired too."""
    def row(planner, seed, ok, steps, err=False):
        return {"env": "genex/X-v0", "planner": planner, "seed": seed, "success": ok, "steps": steps, "collision": err}

    rows = [row("react", 0, True, 4), row("react", 1, True, 3), row("react", 2, True, 5),
            row("react", 3, False, 30, True), row("imagine", 0, True, 2), row("imagine", 1, True, 3), row("imagine", 2, False, 30),
            row("imagine", 3, True, 2), row("imagine", 9, True, 1)]  # seed 9: react never ran it
    (p,) = comparison.paired_against(rows, "react")
    assert (p["planner"], p["n"], p["both"]) == ("imagine", 4, 2)  # seeds 0 and 1
    assert (p["success"], p["baseline_success"], p["errors"], p["baseline_errors"]) == (3, 3, 0, 1)
    assert (p["errors_only_planner"], p["errors_only_baseline"]) == (0, 1)
    assert (p["steps"], p["baseline_steps"], p["steps_diff"]) == (2.5, 3.5, -1.0)
    assert (p["fewer"], p["more"]) == (1, 0)
    assert p["steps_diff_all"] == pytest.approx((-2 + 0 + 25 - 28) / 4)
    assert p["steps_diff_ci"] == pytest.approx(1.96 * np.std([-2, 0], ddof=1) / np.sqrt(2))
    text = comparison.format_paired([p])
    assert "| X-v0 | imagine | 4 | 3 (3) | 0 (1) | 0 / 1 | 2 | 2.50 (3.50) | -1.00 ± 1.96 | 1 / 0 |" in text
    assert comparison.paired_against(rows, "explore") == []
    never = [row("react", 0, False, 40), row("prior", 0, False, 40)]  # no seed both solve: dashes, not nan
    assert "| – (–) | – ± – | 0 / 0 | +0.00 ± – |" in comparison.format_paired(comparison.paired_against(never))


def test_cli_compare_and_viz(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["compare", "--env", "genex/SettingsTabs-v0", "--planners", "react,oracle-imagine", "--episodes", "1",
                 "--out", str(out), "--executor", "inline", "--save-frames", "--quiet", "--no-plots"]) == 0
    text = capsys.readouterr().out
    assert "oracle-imagine" in text and "success" in text
    assert main(["viz", str(out), "--planner", "oracle-imagine"]) == 0
    written = capsys.readouterr().out.split()
    assert any(p.endswith("_belief.png") for p in written) and any(p.endswith(".gif") for p in written)
    assert any(p.endswith("_imagined.png") for p in written) and any(p.endswith("_decisions.png") for p in written)
    assert main(["viz", str(out), "--planner", "oracle-imagine", "--movie", "mp4", "--out", str(tmp_path / "v")]) == 0
    assert any(p.endswith(".mp4") for p in capsys.readouterr().out.split())
    assert main(["summarize", str(out), str(out), "--out", str(tmp_path / "sum"), "--planners", "react",
                 "--no-plots"]) == 0
    text = capsys.readouterr().out
    assert "| SettingsTabs-v0 | react | 1 |" in text and "oracle-imagine" not in text
    assert main(["summarize", str(out), "--out", str(tmp_path / "sum"), "--by", "target_on", "--no-plots"]) == 0
    assert "| env | condition | planner |" in capsys.readouterr().out
    assert (tmp_path / "sum" / "summary_by_target_on.md").exists()
    assert main(["summarize", str(out), "--out", str(tmp_path / "sum"), "--paired", "react", "--no-plots"]) == 0
    assert "| SettingsTabs-v0 | oracle-imagine | 1 |" in capsys.readouterr().out
    assert "oracle-imagine" in (tmp_path / "sum" / "summary_paired.md").read_text()
    with pytest.raises(SystemExit, match="unknown planner"):
        main(["compare", "--env", "genex/SettingsTabs-v0", "--planners", "dream", "--out", str(out)])
    with pytest.raises(SystemExit, match="unknown env"):
        main(["compare", "--env", "genex/Nope-v0", "--out", str(out)])


def test_rows_keep_hidden_conditions_and_summaries_split_by_them(tmp_path):
    rows = compare(small_cfg(planners=["react"], episodes=4), tmp_path, executor="inline", progress=False)
    assert all(isinstance(r["conditions"].get("target_tab"), int) for r in rows)
    split = comparison.summarize(rows, by="target_tab")
    assert sum(s["n"] for s in split) == 4 and len(split) == len({r["conditions"]["target_tab"] for r in rows})
    for s in split:
        mine = [r for r in rows if str(r["conditions"]["target_tab"]) == s["condition"]]
        assert s["success"] == pytest.approx(np.mean([r["success"] for r in mine]))
    both = comparison.summarize(rows, by="target_tab,missing")
    assert all(s["condition"].startswith("target_tab=") and s["condition"].endswith("missing=n/a") for s in both)
    text = write_summary(rows, tmp_path, by="target_tab")
    assert "| env | condition | planner |" in text and (tmp_path / "summary_by_target_tab.csv").exists()


def test_particle_on_an_env_without_hypotheses_is_refused_before_any_episode(tmp_path):
    with pytest.raises(ValueError, match="particle plans over the hypotheses"):
        compare(CompareConfig(envs=["genex/SettingsTabs-v0"], planners=["react", "particle"], episodes=1),
                tmp_path / "run", executor="inline", progress=False)
    assert not (tmp_path / "run").exists()
