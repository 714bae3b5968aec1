"""Pictures for people: the top-down scene map's geometry and the decision timeline."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import genex.envs  # noqa: F401
from genex import viz
from genex.envs.driving.topdown import Footprint, SceneMap


def _map_with_truck() -> SceneMap:
    """Camera at the origin looking along +x; a 4 m x 2 m truck centred 10 m ahead."""
    truck = Footprint(10.0, 0.0, 0.0, 4.0, 2.0, (1, 0, 0, 1), label="truck", occludes=True)
    paint = Footprint(5.0, 5.0, 0.0, 2.0, 2.0, (1, 1, 1, 1))  # road paint: never blocks the view
    ego = Footprint(-1.2, 0.0, 0.0, 4.5, 1.9, (0, 1, 1, 1), label="ego")
    return SceneMap(statics=(paint,), agents=(truck,), ego=ego, cameras=((0.0, 0.0, 0.0),), hfov=np.radians(90),
                    center=(10.0, 0.0), extent=40.0)


def test_occlusion_is_the_shadow_behind_occluders():
    m = _map_with_truck()
    xs = np.array([5.0, 15.0, 15.0, 30.0, 30.0, 5.0])
    ys = np.array([0.0, 0.0, 3.5, 2.0, 4.0, 5.0])
    # in front: seen; straight behind: hidden; beside, outside the shadow: seen; the shadow widens with
    # distance (at 30 m it reaches |y| < 1 * 30 / 8 = 3.75 m); paint does not occlude
    assert m.occluded(xs, ys).tolist() == [False, True, False, True, False, False]
    assert m.in_view_cone(np.array([10.0, -5.0, 10.0]), np.array([0.0, 0.0, 11.0])).tolist() == [True, False, False]


def test_scene_map_of_a_driving_env_marks_the_hidden_agent():
    env = gym.make("genex/OccludedCrosswalk-v0")
    seed = next(s for s in range(200_000, 200_050) if env.reset(seed=s)[1]["answers"]["pedestrian_crossing"] == 0)
    obs, info = env.reset(seed=seed)
    m = env.unwrapped.scene_map()
    ped = next(a for a in m.agents if a.label == "pedestrian")
    assert ped.hidden and not ped.visible and not info["visible"]["pedestrian"]
    occluder = next(a for a in m.agents if a.label in ("truck", "bus"))
    assert occluder.occludes and not occluder.hidden
    # the waiting pedestrian stands in the occluder's shadow, as the visibility label says
    assert m.occluded(np.array([ped.x]), np.array([ped.y]))[0]
    ex, ey, yaw = m.cameras[0]
    assert abs(ex - info["ego"]["x"] - 1.2) < 1e-5 and yaw == pytest.approx(info["ego"]["heading"])
    fig = viz.driving_map(m)
    assert len(fig.axes) == 1 and len(fig.axes[0].patches) > len(m.statics)


def test_scene_map_needs_reset():
    env = gym.make("genex/OccludedLeftTurn-v0")
    with pytest.raises(RuntimeError, match="reset"):
        env.unwrapped.scene_map()


def test_decision_timeline_marks_the_chosen_option(tmp_path):
    body = {"key": {"env": "e", "planner": "p", "seed": 1}, "option_names": ["go", "wait"],
            "decisions": [{"step": t, "decision": t % 2, "decision_name": ["go", "wait"][t % 2],
                           "expected_costs": [1.0 + t % 2, 2.0 - t % 2], "imagined_frames": 8 * t} for t in range(4)]}
    fig = viz.decision_timeline(body, tmp_path / "timeline.png")
    assert (tmp_path / "timeline.png").stat().st_size > 1000
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["go", "wait"]
    offsets = ax.collections[0].get_offsets()
    assert offsets[:, 1].tolist() == [0, 1, 0, 1]  # the rings sit on the chosen options
    with pytest.raises(ValueError, match="expected costs"):
        viz.decision_timeline({"decisions": [{"step": 0}]})


@pytest.mark.parametrize("suffix", [".gif", ".mp4"])
def test_episode_movie(tmp_path, suffix):
    import imageio.v3 as iio

    if suffix == ".mp4":
        pytest.importorskip("imageio_ffmpeg")
    real = np.full((63, 64, 3), 100, np.uint8)  # odd height: the MP4 writer pads it
    frames = {f"step_{t:04d}/real": real + t for t in range(3)}
    frames["step_0001/imagined/creep x8"] = np.full((2, 4, 63, 64, 3), 200, np.uint8)
    body = {"decisions": [{"step": t, "branches": [{"name": "creep x8"}] if t == 1 else []} for t in range(3)]}
    path = viz.episode_gif(body, frames, tmp_path / f"episode{suffix}", fps=4, scale=1)
    movie = iio.imread(path)
    assert len(movie) == 3
