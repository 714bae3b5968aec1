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

demo: setup
	$(VENV)/bin/genex demo --out runs/demo

test: setup
	$(PY) -m pytest -q -p no:cacheprovider

bench: setup
	$(PY) bench/env_speed.py

pictures: setup
	$(PY) scripts/driving_pictures.py --out docs/images
	$(PY) scripts/gui_screenshots.py --out docs/images
