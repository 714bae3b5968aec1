"""Layering: envs never import torch (they must run where torch is not installed)."""

from __future__ import annotations

import subprocess
import sys

CODE = """
import sys
import gymnasium as gym
import genex.envs
import genex.recording
for env_id in genex.envs.ENV_IDS:
    env = gym.make(env_id)
    env.reset(seed=0)
    env.step(env.action_space.sample())
    env.close()
bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'diffusers', 'transformers'))
print(','.join(bad))
"""


def test_envs_never_import_torch():
    out = subprocess.run([sys.executable, "-c", CODE], check=True, capture_output=True, text=True).stdout.strip()
    assert out == "", f"envs pulled in: {out}"
