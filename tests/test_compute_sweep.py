"""genex.compare.sweep and ``genex sweep-compute``: the grid, one compare folder per setting, the table and figures."""

from __future__ import annotations

import json

import pytest

from genex.compare import CompareConfig
from genex.compare.sweep import SweepSetting, load_sweep, sweep_compute, sweep_settings, write_sweep


def test_the_grid_is_the_product_without_duplicates_and_refuses_bad_values():
    grid = sweep_settings([4, 1, 4], [8, 2])
    assert grid == [SweepSetting(1, 2), SweepSetting(1, 8), SweepSetting(4, 2), SweepSetting(4, 8)]
    assert SweepSetting.from_folder(SweepSetting(16, 4).folder) == SweepSetting(16, 4)
    assert SweepSetting.from_folder("summary.md") is None
    for bad in ([0], [True], [1.5]):
        with pytest.raises(ValueError, match="samples"):
            sweep_settings(bad, [8])
    with pytest.raises(ValueError, match="at least one"):
        sweep_settings([1], [])


def test_load_sweep_without_results_names_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="no sweep results"):
        load_sweep(tmp_path)


def test_a_small_sweep_runs_every_setting_on_the_same_seeds_and_resumes(tmp_path, one_torch_thread):
    base = CompareConfig(envs=["genex/MailCompose-v0"], planners=["imagine", "imagine-voi"], episodes=2)
    out = tmp_path / "sweep"
    summary = sweep_compute(base, out, samples=[1, 2], horizons=[8], workers=1, executor="inline", progress=False)
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["samples_1-horizon_8", "samples_2-horizon_8"]
    by = {(s["planner"], s["samples"]): s for s in summary}
    assert set(by) == {("imagine", 1), ("imagine", 2), ("imagine-voi", 1), ("imagine-voi", 2)}
    assert all(s["n"] == 2 and s["horizon"] == 8 for s in summary)
    # imagine imagines every branch S times: twice the samples, twice the frames per decision
    assert by[("imagine", 2)]["imagined_per_decision"] == pytest.approx(2 * by[("imagine", 1)]["imagined_per_decision"])
    assert by[("imagine-voi", 2)]["imagined_per_decision"] < by[("imagine", 2)]["imagined_per_decision"]
    for setting in ("samples_1-horizon_8", "samples_2-horizon_8"):  # each setting ran its options, same seeds
        run = json.loads((out / setting / "run.json").read_text())
        assert run["settings"]["options"]["samples"] == int(setting.split("_")[1].split("-")[0])
        seeds = {json.loads(line)["seed"] for line in (out / setting / "episodes.jsonl").read_text().splitlines()}
        assert seeds == {200_000, 200_001}
    before = (out / "samples_1-horizon_8" / "episodes.jsonl").read_text()
    again = sweep_compute(base, out, samples=[1], horizons=[8], workers=1, executor="inline", progress=False)
    assert (out / "samples_1-horizon_8" / "episodes.jsonl").read_text() == before  # resumed: nothing re-ran
    assert len(again) == len(summary)  # the table covers every setting folder, not only this grid's
    table = write_sweep(again, out)
    assert table.count("| MailCompose-v0 |") == 4
    for name in ("sweep.md", "sweep.csv", "sweep.png", "sweep_seconds.png"):
        assert (out / name).stat().st_size > 0
    header = (out / "sweep.csv").read_text().splitlines()[0].split(",")
    assert header[:5] == ["env", "planner", "horizon", "samples", "n"] and "success_ci" in header


def test_cli_refuses_bad_grids_before_running(tmp_path):
    from genex.cli import main

    base = ["sweep-compute", "--env", "genex/MailCompose-v0", "--episodes", "1", "--out", str(tmp_path / "s")]
    with pytest.raises(SystemExit, match="integers >= 1"):
        main(base + ["--samples", "0,2"])
    with pytest.raises(SystemExit, match="comma-separated integers"):
        main(base + ["--horizons", "a"])
    with pytest.raises(SystemExit, match="set by the grid"):
        main(base + ["--option", "samples=2"])
    with pytest.raises(SystemExit, match="unknown planner"):
        main(base + ["--planners", "imagin"])
    assert not (tmp_path / "s").exists()


@pytest.mark.slow
def test_cli_sweep_writes_table_and_figures(tmp_path, capsys):
    """The README's `genex sweep-compute` line, on one episode and two settings."""
    from genex.cli import main

    out = tmp_path / "s"
    assert main(["sweep-compute", "--env", "genex/SettingsTabs-v0", "--planners", "imagine", "--samples", "1,2",
                 "--episodes", "1", "--workers", "1", "--executor", "inline", "--quiet", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert text.count("| SettingsTabs-v0 | imagine | 8 |") == 2
    assert (out / "sweep.png").exists() and (out / "sweep_seconds.png").exists()
