"""The genex command line, run in-process."""

from __future__ import annotations

import pytest

from genex.cli import main


def test_envs_lists_all(capsys):
    assert main(["envs"]) == 0
    out = capsys.readouterr().out
    assert "genex/OccludedCrosswalk-v0" in out and "Is a pedestrian about to cross" in out


def test_record_and_resume(tmp_path, capsys):
    args = ["record", "--env", "genex/OccludedLeftTurn-v0", "--episodes", "2", "--out", str(tmp_path), "--quiet",
            "--env-kwargs", '{"width": 32, "height": 32}']
    assert main(args) == 0
    files = sorted((tmp_path / "episodes").glob("episode_*.npz"))
    stamps = [f.stat().st_mtime_ns for f in files]
    assert main(args) == 0  # resume: nothing left to do, nothing rewritten
    assert [f.stat().st_mtime_ns for f in files] == stamps
    assert "2 episodes" in capsys.readouterr().out


def test_demo_writes_gif(tmp_path, capsys):
    assert main(["demo", "--env", "genex/StoppedLeadCar-v0", "--out", str(tmp_path)]) == 0
    gifs = list(tmp_path.glob("*.gif"))
    assert len(gifs) == 1 and gifs[0].stat().st_size > 1000
    assert "success=True" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv,match",
    [
        (["record", "--env", "genex/Nope-v0", "--episodes", "1", "--out", "x"], "unknown env"),
        (["record", "--env", "genex/OccludedLeftTurn-v0", "--episodes", "1", "--out", "x", "--env-kwargs", "{bad"],
         "JSON"),
        (["record", "--env", "genex/OccludedLeftTurn-v0", "--episodes", "-2", "--out", "x"], "episodes"),
    ],
)
def test_bad_arguments_exit_with_a_message(argv, match, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit, match=match):
        main(argv)



@pytest.mark.parametrize("command, required", [
    ("train-world-model", ["--out", "x"]), ("eval-world-model", ["--checkpoint", "m", "--out", "x"]),
    ("train-policy", ["--out", "x"]), ("eval-policy", ["--checkpoint", "m"]),
    ("measure-fidelity", ["--world-model", "w", "--policy", "p"])])
def test_data_folders_can_follow_one_flag_or_repeat_it(command, required):
    """`--data DIR/{A,B}` (a shell brace expansion, as the READMEs write it) and `--data A --data B` agree."""
    from genex.cli import build_parser

    args = build_parser().parse_args([command, "--data", "a", "b", "--data", "c", *required])
    assert args.data == ["a", "b", "c"]
