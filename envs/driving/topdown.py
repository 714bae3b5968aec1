"""A 2D map of a driving scene for people: footprints, the ego's field of view and what it hides.

:meth:`DrivingEnv.scene_map` returns a :class:`SceneMap` (plain NumPy/dataclass data, no
rendering); :func:`genex.viz.driving_map` draws it. The map is *privileged*: it shows hidden
agents, so it is for explaining episodes, never for planners.

Occlusion is computed on the ground plane: a ground point is hidden when the straight line from
the camera to it crosses the footprint of an occluder (a vehicle, or a static box taller than
``OCCLUDER_MIN_HEIGHT``: buildings, not road paint). Tall things behind a low car (a pedestrian's
head) may still show in the real frame; the map errs on the side of "hidden".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Footprint", "SceneMap", "OCCLUDER_MIN_HEIGHT", "VEHICLE_KINDS"]

OCCLUDER_MIN_HEIGHT = 1.0  # metres: static boxes at least this tall block the view
VEHICLE_KINDS = ("car", "van", "truck", "bus", "emergency")  # agents that block the view


@dataclass(frozen=True)
class Footprint:
    """A box seen from above: centre ``(x, y)`` (m), ``yaw`` (rad), full ``length`` x ``width`` (m)."""

    x: float
    y: float
    yaw: float
    length: float
    width: float
    rgba: tuple[float, float, float, float]
    label: str = ""
    occludes: bool = False
    hidden: bool = False  # an agent that carries the hidden fact
    visible: bool = True  # seen in the current real frame (visibility label)

    def corners(self) -> np.ndarray:
        """``float[4, 2]`` corners, counter-clockwise."""
        c, s = np.cos(self.yaw), np.sin(self.yaw)
        hl, hw = self.length / 2, self.width / 2
        local = np.array([[hl, hw], [-hl, hw], [-hl, -hw], [hl, -hw]])
        return local @ np.array([[c, s], [-s, c]]) + np.array([self.x, self.y])


@dataclass(frozen=True)
class SceneMap:
    """One moment of a driving episode from above.

    ``statics``: road, paint, sidewalks, buildings; ``agents``: present agent slots;
    ``ego``: the ego car; ``cameras``: ``(x, y, yaw)`` of each egocentric camera (rad, world
    frame), each ``hfov`` wide (rad); ``center``/``extent``: the square region worth drawing (m).
    """

    statics: tuple[Footprint, ...]
    agents: tuple[Footprint, ...]
    ego: Footprint
    cameras: tuple[tuple[float, float, float], ...]
    hfov: float
    center: tuple[float, float]
    extent: float
    t: int = 0

    def in_view_cone(self, xs: np.ndarray, ys: np.ndarray, max_range: float = 80.0) -> np.ndarray:
        """``bool[...]``: points inside any camera's horizontal field of view (ignoring occluders)."""
        out = np.zeros(np.broadcast(xs, ys).shape, bool)
        for cx, cy, yaw in self.cameras:
            dx, dy = xs - cx, ys - cy
            ang = np.angle(np.exp(1j * (np.arctan2(dy, dx) - yaw)))
            out |= (np.abs(ang) <= self.hfov / 2) & (np.hypot(dx, dy) <= max_range)
        return out

    def occluded(self, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        """``bool[...]``: ground points whose line of sight from the (first) camera crosses an occluder.

        A slab test of the segment camera -> point against each occluder's footprint, in the
        footprint's own frame; vectorised over points.
        """
        xs, ys = np.broadcast_arrays(np.asarray(xs, float), np.asarray(ys, float))
        cx, cy, _ = self.cameras[len(self.cameras) // 2]
        hit = np.zeros(xs.shape, bool)
        for box in (*self.statics, *self.agents):
            if not box.occludes:
                continue
            c, s = np.cos(box.yaw), np.sin(box.yaw)
            # camera and points in the box frame
            ox, oy = (cx - box.x) * c + (cy - box.y) * s, -(cx - box.x) * s + (cy - box.y) * c
            px, py = (xs - box.x) * c + (ys - box.y) * s, -(xs - box.x) * s + (ys - box.y) * c
            t0, t1 = np.zeros(xs.shape), np.ones(xs.shape)
            for o, d, half in ((ox, px - ox, box.length / 2), (oy, py - oy, box.width / 2)):
                with np.errstate(divide="ignore", invalid="ignore"):
                    a, b = (-half - o) / d, (half - o) / d
                lo, hi = np.minimum(a, b), np.maximum(a, b)
                parallel = np.abs(d) < 1e-12
                inside = np.abs(o) <= half
                lo = np.where(parallel, np.where(inside, -np.inf, np.inf), lo)
                hi = np.where(parallel, np.where(inside, np.inf, -np.inf), hi)
                t0, t1 = np.maximum(t0, lo), np.minimum(t1, hi)
            hit |= t0 <= t1
        return hit
