"""Write one PNG per GUI app: the agent's 128x128 screen (scaled up) next to the human view.

    python scripts/gui_screenshots.py --out docs/images/ --seed 0 --steps 1
    python scripts/gui_screenshots.py --env genex/MailCompose-v0 --steps 0   # its start: the expert's one step ends it

Each image shows, left, the observation an agent gets (scaled up with
nearest-neighbour so each screen pixel stays visible) and, right, ``env.render()`` (the same frame
re-rendered at 512x512, not upscaled). ``--steps`` expert steps are taken
first so the shot shows the app mid-task.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import gymnasium as gym
import numpy as np
from PIL import Image

from genex.envs.gui import GUI_ENV_IDS, register_gui_envs
from genex.envs.gui.users import GuiExpert

ROOT = Path(__file__).resolve().parents[1]


def screenshot(env_id: str, seed: int, steps: int, render_size: int = 512) -> Image.Image:
    """The side-by-side image for ``env_id`` after ``steps`` expert steps from ``reset(seed)``."""
    env = gym.make(env_id, render_mode="rgb_array", render_size=render_size)
    obs, info = env.reset(seed=seed)
    expert = GuiExpert()
    expert.reset(env, seed)
    for _ in range(steps):
        obs, _, terminated, truncated, info = env.step(expert.act(obs, info))
        if terminated or truncated:
            break
    agent = Image.fromarray(obs["image"]).resize((render_size, render_size), Image.Resampling.NEAREST)
    human = Image.fromarray(env.render())
    env.close()
    gap = 8
    canvas = Image.new("RGB", (2 * render_size + gap, render_size), (255, 255, 255))
    canvas.paste(agent, (0, 0))
    canvas.paste(human, (render_size + gap, 0))
    return canvas


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images", help="output folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=1, help="expert steps before the screenshot")
    parser.add_argument("--env", action="append", choices=GUI_ENV_IDS, help="only this app (repeatable; default: all)")
    args = parser.parse_args()
    register_gui_envs()
    args.out.mkdir(parents=True, exist_ok=True)
    for env_id in args.env or GUI_ENV_IDS:
        name = env_id.split("/")[1].removesuffix("-v0")
        path = args.out / f"gui_{name}.png"
        image = screenshot(env_id, args.seed, args.steps)
        tmp = path.with_suffix(".tmp.png")
        image.save(tmp)
        tmp.replace(path)
        print(f"wrote {path} ({np.asarray(image).shape[1]}x{np.asarray(image).shape[0]})")


if __name__ == "__main__":
    main()
