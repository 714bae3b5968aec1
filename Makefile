# The two commands a fresh machine needs (see README):
#   make demo   set up .venv and run the main job
#   make test   set up .venv and run the test suite (what CI runs)
VENV ?= .venv
PY := $(VENV)/bin/python
export MUJOCO_GL ?= egl
export SDL_VIDEODRIVER ?= dummy

.PHONY: setup demo test bench pictures

setup:
	bash scripts/setup.sh

# The main job: a short imagine-vs-react comparison on the shipped checkpoints (held-out seeds) with the fair
# (posterior-imagine) and privileged (oracle-imagine) upper bounds, then pictures of one imagining episode; then
# the same on the settings app, where learned imagination saves real clicks, and the mail app, where it avoids
# irreversible clicks (posterior-imagine is driving-only). About 5-6 minutes on 2 CPU cores after set-up;
# rerunning resumes (and starts over, keeping the old run aside, after a checkpoint update).
DEMO_ENVS ?= genex/OccludedCrosswalk-v0
DEMO_GUI_ENVS ?= genex/SettingsTabs-v0,genex/MailCompose-v0
DEMO_EPISODES ?= 12
demo: setup
	$(VENV)/bin/genex compare --env $(DEMO_ENVS) --planners react,imagine,posterior-imagine,oracle-imagine \
		--episodes $(DEMO_EPISODES) --samples 2 --save-frames --restart-stale --out runs/demo
	$(VENV)/bin/genex viz runs/demo --planner imagine --out runs/demo/viz
	$(VENV)/bin/genex compare --env $(DEMO_GUI_ENVS) --planners react,imagine,oracle-imagine \
		--episodes $(DEMO_EPISODES) --save-frames --restart-stale --out runs/demo_gui
	$(VENV)/bin/genex viz runs/demo_gui --planner imagine --out runs/demo_gui/viz

test: setup
	$(PY) -m ruff check .
	$(PY) -m pytest -q -p no:cacheprovider

bench: setup
	$(PY) bench/env_speed.py

pictures: setup
	$(PY) scripts/driving_pictures.py --out docs/images
	$(PY) scripts/gui_screenshots.py --out docs/images
	$(PY) scripts/gui_screenshots.py --out docs/images --env genex/MailCompose-v0 --steps 0  # its start
