"""Pictures of each driving scenario for the README.

    python scripts/driving_pictures.py [--out docs/images] [--seed 1]

For each scenario (hidden agent present, no cue) writes one PNG with three
panels: the 64x64 egocentric view at the start (hidden agent occluded), the
egocentric view after the ego moved to look (creep / peek), and the top-down
map at that moment (the ego is the cyan car).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import gymnasium as gym  # noqa: E402
import imageio.v3 as iio  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

import genex.envs  # noqa: E402,F401

CASES = {
    "genex/OccludedCrosswalk-v0": (1.0, "creep", "pedestrian"),
    "genex/StoppedLeadCar-v0": ((1.0, 0.0, 0.0), "overtake", "pedestrian"),
    "genex/OccludedLeftTurn-v0": (1.0, "creep", "oncoming_vehicle"),
}
SIZE = 256


def _panel(img: np.ndarray, caption: str) -> np.ndarray:
    im = Image.fromarray(img).resize((SIZE, SIZE), Image.NEAREST)
    canvas = Image.new("RGB", (SIZE, SIZE + 18), "white")
    canvas.paste(im, (0, 18))
    ImageDraw.Draw(canvas).text((4, 3), caption, fill="black")
    return np.asarray(canvas)


def picture(env_id: str, seed: int) -> np.ndarray:
    prior, look, fact = CASES[env_id]
    env = gym.make(env_id, hidden_prior=prior, cue_prob=0.0, render_mode="rgb_array", render_size=SIZE)
    u = env.unwrapped
    obs, info = env.reset(seed=seed)
    start = obs["image"]
    a = u.action_names.index(look)
    for _ in range(60):
        obs, _, term, trunc, info = env.step(a)
        if info["visible"][fact] or term or trunc:
            break
    panels = [
        _panel(start, f"ego view, t=0: {fact} hidden"),
        _panel(obs["image"], f"after {look} x{info['t']}: {fact} visible={info['visible'][fact]}"),
        _panel(env.render(), "top-down (ego = cyan)"),
    ]
    env.close()
    gap = np.full((panels[0].shape[0], 6, 3), 255, np.uint8)
    return np.concatenate([panels[0], gap, panels[1], gap, panels[2]], axis=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="docs/images")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for env_id in CASES:
        path = out / f"driving_{env_id.split('/')[1].removesuffix('-v0')}.png"
        iio.imwrite(path, picture(env_id, args.seed))
        print(path)


if __name__ == "__main__":
    main()
