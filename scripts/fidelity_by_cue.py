"""Imagination fidelity on the crosswalk split by the episode's hidden cue (docs/world_model.md).

Copies the held-out and validation crosswalk recordings into /tmp/cuefid/<group>/ (cued pedestrian,
pedestrian without cue, no pedestrian), then measures, per group, how often the shipped world model's
imagined futures (read by the shipped policy) show a pedestrian who really comes into view (recall) and one
who does not (false alarm). A diagnostic; nothing is written into the checkpoints.

    MUJOCO_GL=egl python scripts/fidelity_by_cue.py
"""
import shutil, json
from pathlib import Path
from genex.recording import iter_episodes
from genex.world_model import load_world_model
from genex.policy import make_policy
from genex.planners.calibration import measure_fidelity
import gymnasium as gym, genex.envs
groups = {}
for d in ['data/wm/heldout/OccludedCrosswalk', 'data/wm/val/OccludedCrosswalk']:
    files = sorted((Path(d) / 'episodes').glob('episode_*.npz'))
    for f, ep in zip(files, iter_episodes(d)):
        h = ep.meta['hidden']
        g = 'no_pedestrian' if not h['pedestrian_crossing'] else ('cued' if h['cue'] != 'none' else 'no_cue')
        out = Path('/tmp/cuefid') / g / Path(d).parent.name
        (out / 'episodes').mkdir(parents=True, exist_ok=True)
        shutil.copy(Path(d) / 'manifest.json', out / 'manifest.json')
        shutil.copy(f, out / 'episodes' / f.name)
env = gym.make('genex/OccludedCrosswalk-v0')
wm = load_world_model('checkpoints/world_model/driving', env=env, device='cpu')
pol = make_policy('tiny', checkpoint='checkpoints/policy/tiny-driving')
for g in ('cued', 'no_cue', 'no_pedestrian'):
    dirs = sorted(str(p) for p in (Path('/tmp/cuefid') / g).iterdir())
    r = measure_fidelity(wm, pol, dirs, ['pedestrian', 'ball'], max_windows=160, progress=False)
    print(g, json.dumps({f: {k: (round(v, 3) if isinstance(v, float) else v) for k, v in s.items()} for f, s in r.items()}), flush=True)
