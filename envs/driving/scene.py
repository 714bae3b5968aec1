"""MuJoCo scene building and CPU rendering for the driving scenarios.

The scene is built once per env from a :class:`SceneSpec`: static boxes
(road, markings, sidewalks, buildings) plus one *mocap* body per agent slot,
so moving an agent is writing ``mocap_pos``/``mocap_quat`` (no physics). The
ego is a mocap body that carries the egocentric camera(s).

Rendering choices that matter for speed on a CPU (llvmpipe through EGL or
OSMesa): no shadows, no multisampling, and *no plane geoms* (MuJoCo draws
planes as fine grids; a box ground renders about 20x faster at 64x64).

Visibility labels come from MuJoCo's segmentation render: each pixel carries
the id of the geom drawn there; a fact ("pedestrian") is visible when the
geoms of its group cover at least ``min_visible_pixels`` pixels.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np

os.environ.setdefault("MUJOCO_GL", "egl")

import mujoco  # noqa: E402

__all__ = ["Box", "SlotSpec", "SceneSpec", "DrivingScene", "AGENT_KINDS", "CAMERA_POS"]

# Where the egocentric cameras sit in the ego's frame (m): ahead of the centre, at eye height.
CAMERA_POS = (1.2, 0.0, 1.3)


@dataclass(frozen=True)
class Box:
    """A static box: centre ``pos`` (m), half-sizes ``size`` (m), ``rgba`` in [0, 1]."""

    pos: tuple[float, float, float]
    size: tuple[float, float, float]
    rgba: tuple[float, float, float, float]
    yaw: float = 0.0


# Agent kinds and their default footprints (length, width) in metres.
AGENT_KINDS: dict[str, tuple[float, float]] = {
    "car": (4.5, 1.9),
    "van": (5.2, 2.1),
    "truck": (8.0, 2.5),
    "bus": (11.0, 2.6),
    "pedestrian": (0.5, 0.5),
    "ball": (0.5, 0.5),
    "emergency": (5.6, 2.2),
}


@dataclass(frozen=True)
class SlotSpec:
    """One agent slot: its role name (used for visibility facts) and kind."""

    role: str
    kind: str

    def __post_init__(self) -> None:
        if self.kind not in AGENT_KINDS:
            raise ValueError(f"unknown agent kind {self.kind!r}; expected one of {sorted(AGENT_KINDS)}")


@dataclass(frozen=True)
class SceneSpec:
    statics: tuple[Box, ...]
    slots: tuple[SlotSpec, ...]
    topdown_center: tuple[float, float]
    topdown_extent: float  # metres shown across the top-down view


def _fmt(v: Sequence[float]) -> str:
    return " ".join(f"{x:.4g}" for x in v)


def _camera_axes(yaw: float, pitch_down: float) -> str:
    fwd = np.array([np.cos(yaw) * np.cos(pitch_down), np.sin(yaw) * np.cos(pitch_down), -np.sin(pitch_down)])
    right = np.array([np.sin(yaw), -np.cos(yaw), 0.0])
    up = np.cross(right, fwd)
    return _fmt(np.concatenate([right, up]))


def _agent_geoms(kind: str, length: float, width: float) -> list[tuple[str, str]]:
    """Geoms of an agent body in its frame (x forward, z up); returns ``(name_suffix, xml)`` pairs.

    Suffix ``light`` marks lamp geoms whose colour changes over time (brake,
    hazard, emergency light bar).
    """
    L, W = length / 2, width / 2
    out: list[tuple[str, str]] = []

    def box(name: str, pos, size, rgba="0.5 0.5 0.5 1"):
        out.append((name, f'<geom name="{{p}}_{name}" type="box" pos="{_fmt(pos)}" size="{_fmt(size)}" rgba="{rgba}"/>'))

    if kind in ("car", "van", "emergency"):
        body_h = {"car": 0.45, "van": 0.85, "emergency": 0.9}[kind]
        box("body", (0, 0, 0.3 + body_h), (L, W, body_h))
        if kind == "car":
            box("cabin", (-0.2, 0, 1.45), (L * 0.45, W * 0.9, 0.3), "0.15 0.15 0.2 1")
        for i, (sx, sy) in enumerate([(1, 1), (1, -1), (-1, 1), (-1, -1)]):
            box(f"wheel{i}", (sx * (L - 0.7), sy * (W - 0.15), 0.3), (0.3, 0.15, 0.3), "0.05 0.05 0.05 1")
        for i, sy in enumerate((1, -1)):
            box(f"light{i}", (-L - 0.02, sy * (W - 0.3), 0.75), (0.03, 0.2, 0.1), "0.4 0.1 0.1 1")
        if kind == "emergency":
            box("lightbar0", (0, 0.4, 2.2 + 0.12), (0.3, 0.35, 0.12), "0.9 0.1 0.1 1")
            box("lightbar1", (0, -0.4, 2.2 + 0.12), (0.3, 0.35, 0.12), "0.1 0.2 0.9 1")
    elif kind in ("truck", "bus"):
        clearance = 0.7
        top = 3.4 if kind == "truck" else 3.1
        cab = 1.6 if kind == "truck" else 0.0
        if cab:
            box("cab", (L - cab / 2, 0, 1.5), (cab / 2, W, 1.1))
        box("body", (-cab / 2, 0, (clearance + top) / 2), (L - cab / 2, W, (top - clearance) / 2))
        for i, (sx, sy) in enumerate([(1, 1), (1, -1), (-1, 1), (-1, -1)]):
            box(f"wheel{i}", (sx * (L - 1.0), sy * (W - 0.25), 0.45), (0.45, 0.25, 0.45), "0.05 0.05 0.05 1")
    elif kind == "pedestrian":
        box("legs", (0, 0, 0.45), (0.12, 0.17, 0.45), "0.15 0.15 0.3 1")
        box("torso", (0, 0, 1.2), (0.14, 0.22, 0.3))
        out.append(("head", '<geom name="{p}_head" type="sphere" pos="0 0 1.65" size="0.13" rgba="0.85 0.7 0.55 1"/>'))
    elif kind == "ball":
        out.append(("ball", '<geom name="{p}_ball" type="sphere" pos="0 0 0.25" size="0.25" rgba="0.9 0.2 0.2 1"/>'))
    else:  # pragma: no cover - guarded by SlotSpec
        raise ValueError(kind)
    return out


class DrivingScene:
    """A MuJoCo model of one scenario plus the renderers that draw it.

    Args:
        spec: static boxes and agent slots.
        width, height: egocentric frame size per camera (pixels, >= 8).
        n_cameras: 1 for a plain egocentric view, >1 for a panorama of
            cameras side by side (left to right), each ``fovy`` wide.
        fovy: vertical field of view of each camera (degrees).
        render_size: side of the square top-down view for people.
    """

    def __init__(
        self,
        spec: SceneSpec,
        *,
        width: int = 64,
        height: int = 64,
        n_cameras: int = 1,
        fovy: float = 70.0,
        render_size: int = 256,
    ) -> None:
        self.spec = spec
        self.width, self.height, self.n_cameras = width, height, n_cameras
        self.fovy = fovy
        self.render_size = render_size
        # fovy is vertical; cameras sit side by side, so they are spaced by the horizontal field of view
        self.hfov = float(2 * np.arctan(np.tan(np.radians(fovy) / 2) * width / height))
        #: yaw of each camera relative to the ego's heading (rad), left camera first
        self.camera_yaws = tuple(self.hfov * ((n_cameras - 1) / 2 - i) for i in range(n_cameras))
        self.model = mujoco.MjModel.from_xml_string(self._xml())
        self.data = mujoco.MjData(self.model)
        m = self.model
        self.camera_ids = [mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_CAMERA, f"ego_cam{i}") for i in range(n_cameras)]
        self.topdown_id = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_CAMERA, "topdown")
        self.chase_id = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_CAMERA, "chase")
        self.slot_mocap = np.array(
            [m.body_mocapid[mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, f"slot{i}")] for i in range(len(spec.slots))],
            dtype=np.int64,
        )
        self.ego_mocap = m.body_mocapid[mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, "ego")]
        # geom -> slot index (-1 for statics), and lamp geoms per slot
        self.geom_slot = np.full(m.ngeom, -1, dtype=np.int64)
        self.light_geoms: dict[int, list[int]] = {}
        self.slot_geoms: dict[int, list[int]] = {}
        for g in range(m.ngeom):
            name = mujoco.mj_id2name(m, mujoco.mjtObj.mjOBJ_GEOM, g) or ""
            if name.startswith("slot") and "_" in name:
                slot = int(name[4:].split("_")[0])
                self.geom_slot[g] = slot
                self.slot_geoms.setdefault(slot, []).append(g)
                if "_light" in name:
                    self.light_geoms.setdefault(slot, []).append(g)
        self.default_rgba = m.geom_rgba.copy()

        self._ego: _EgoRenderer | None = None
        self._view_renderer: mujoco.Renderer | None = None

    # ------------------------------------------------------------------ model
    def _xml(self) -> str:
        spec = self.spec
        offw = max(self.width * self.n_cameras, self.render_size, 64)
        offh = max(2 * self.height, self.render_size, 64)  # RGB row above the segmentation row
        statics = "\n".join(
            f'<geom type="box" pos="{_fmt(b.pos)}" size="{_fmt(b.size)}" rgba="{_fmt(b.rgba)}" '
            f'euler="0 0 {np.degrees(b.yaw):.4g}"/>'
            for b in spec.statics
        )
        slots = []
        for i, slot in enumerate(spec.slots):
            length, width = AGENT_KINDS[slot.kind]
            geoms = "\n".join(xml.replace("{p}", f"slot{i}") for _, xml in _agent_geoms(slot.kind, length, width))
            slots.append(f'<body name="slot{i}" mocap="true" pos="0 0 -100">{geoms}</body>')
        cams = [
            f'<camera name="ego_cam{i}" pos="{_fmt(CAMERA_POS)}" xyaxes="{_camera_axes(yaw, np.radians(4))}" '
            f'fovy="{self.fovy}"/>'
            for i, yaw in enumerate(self.camera_yaws)
        ]
        cx, cy = spec.topdown_center
        return f"""
<mujoco model="genex_driving">
  <visual>
    <quality shadowsize="0" offsamples="0"/>
    <global offwidth="{offw}" offheight="{offh}"/>
    <headlight ambient="0.45 0.45 0.45" diffuse="0.5 0.5 0.5" specular="0 0 0"/>
    <map znear="0.002" zfar="4"/>
  </visual>
  <!-- znear/zfar are relative to the extent: 0.2 m .. 400 m -->
  <statistic extent="100" center="{cx} {cy} 0"/>
  <asset>
    <texture name="sky" type="skybox" builtin="gradient" rgb1="0.55 0.7 0.9" rgb2="0.85 0.9 0.95" width="32" height="32"/>
  </asset>
  <worldbody>
    <light directional="true" pos="0 0 50" dir="0.3 0.2 -1" castshadow="false" diffuse="0.4 0.4 0.4"/>
    {statics}
    {''.join(slots)}
    <body name="ego" mocap="true" pos="0 0 0">
      {''.join(cams)}
      <!-- the ego car: group 2, drawn in the views for people, hidden from its own cameras -->
      <geom name="ego_body" type="box" pos="0 0 0.75" size="2.25 0.95 0.45" rgba="0.1 0.8 0.9 1" group="2"/>
      <geom name="ego_cabin" type="box" pos="-0.2 0 1.45" size="1.0 0.85 0.3" rgba="0.1 0.3 0.35 1" group="2"/>
      <camera name="chase" pos="-9 0 5" xyaxes="{_camera_axes(0.0, np.radians(22))}" fovy="60"/>
    </body>
    <camera name="topdown" pos="{cx} {cy} 60" xyaxes="1 0 0 0 1 0" projection="orthographic" fovy="{spec.topdown_extent}"/>
  </worldbody>
</mujoco>"""

    # ------------------------------------------------------------------ state
    def set_state(
        self,
        ego_xy_heading: tuple[float, float, float],
        agents_x: np.ndarray,
        agents_y: np.ndarray,
        agents_heading: np.ndarray,
        present: np.ndarray,
    ) -> None:
        """Place the ego and every agent slot (absent slots go underground)."""
        d = self.data
        ex, ey, eh = ego_xy_heading
        d.mocap_pos[self.ego_mocap] = (ex, ey, 0.0)
        d.mocap_quat[self.ego_mocap] = (np.cos(eh / 2), 0.0, 0.0, np.sin(eh / 2))
        z = np.where(present, 0.0, -100.0)
        d.mocap_pos[self.slot_mocap] = np.stack([agents_x, agents_y, z], axis=-1)
        half = np.asarray(agents_heading) / 2
        quat = np.zeros((len(half), 4))
        quat[:, 0] = np.cos(half)
        quat[:, 3] = np.sin(half)
        d.mocap_quat[self.slot_mocap] = quat
        mujoco.mj_kinematics(self.model, d)
        mujoco.mj_camlight(self.model, d)  # cameras ride on the ego body

    def set_slot_rgba(self, slot: int, rgba: Sequence[float]) -> None:
        """Colour the paintable geoms of a slot (body, cab, torso), keeping lamps and wheels."""
        for g in self.slot_geoms.get(slot, []):
            name = mujoco.mj_id2name(self.model, mujoco.mjtObj.mjOBJ_GEOM, g)
            if name.endswith(("_body", "_cab", "_torso")):
                self.model.geom_rgba[g] = rgba

    def set_light(self, slot: int, index: int, rgba: Sequence[float]) -> None:
        self.model.geom_rgba[self.light_geoms[slot][index]] = rgba

    # ------------------------------------------------------------------ render
    def _view(self) -> mujoco.Renderer:
        if self._view_renderer is None:
            self._view_renderer = mujoco.Renderer(self.model, self.render_size, self.render_size)
        return self._view_renderer

    def render_ego(self, with_segmentation: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        """Egocentric frame ``uint8[H, W * n_cameras, 3]`` and geom-id map ``int64[H, W * n_cameras]``.

        The geom-id map holds ``-1`` for background (sky). RGB and segmentation
        of every camera are drawn into one framebuffer and read back with a
        single ``glReadPixels`` (the read, not the drawing, dominates at 64x64).
        """
        if self._ego is None:
            self._ego = _EgoRenderer(self.model, self.width, self.height, self.camera_ids)
        return self._ego.render(self.data, with_segmentation)

    def render_view(self, view: str = "topdown") -> np.ndarray:
        """A view for people: ``"topdown"`` (orthographic map) or ``"chase"`` (behind the ego)."""
        if view not in ("topdown", "chase"):
            raise ValueError(f"unknown view {view!r}; expected 'topdown' or 'chase'")
        r = self._view()
        r.update_scene(self.data, camera=self.topdown_id if view == "topdown" else self.chase_id)
        return r.render().copy()

    def slot_pixel_counts(self, seg_map: np.ndarray) -> np.ndarray:
        """``int64[n_slots]``: pixels of each agent slot in a geom-id map."""
        ids = seg_map[seg_map >= 0]
        slots = self.geom_slot[ids]
        slots = slots[slots >= 0]
        return np.bincount(slots, minlength=len(self.spec.slots))

    def light_pixel_counts(self, seg_map: np.ndarray, slot: int) -> int:
        lights = self.light_geoms.get(slot, [])
        return int(np.isin(seg_map, lights).sum()) if lights else 0

    def close(self) -> None:
        if self._ego is not None:
            self._ego.close()
        if self._view_renderer is not None:
            self._view_renderer.close()
        self._ego = self._view_renderer = None


class _EgoRenderer:
    """Low-level offscreen renderer for the egocentric cameras (RGB + segmentation, one read)."""

    def __init__(self, model: mujoco.MjModel, width: int, height: int, camera_ids: list[int]) -> None:
        self.model, self.width, self.height = model, width, height
        n = len(camera_ids)
        self.gl = mujoco.GLContext(max(width * n, 1), 2 * height)
        self.gl.make_current()
        self.con = mujoco.MjrContext(model, mujoco.mjtFontScale.mjFONTSCALE_150)
        mujoco.mjr_setBuffer(mujoco.mjtFramebuffer.mjFB_OFFSCREEN, self.con)
        self.scene = mujoco.MjvScene(model, maxgeom=1000)
        self.option = mujoco.MjvOption()
        self.option.geomgroup[2] = 0  # the ego's own car is not in its cameras
        self.perturb = mujoco.MjvPerturb()
        self.cameras = []
        for cid in camera_ids:
            cam = mujoco.MjvCamera()
            cam.type = mujoco.mjtCamera.mjCAMERA_FIXED
            cam.fixedcamid = cid
            self.cameras.append(cam)
        self.buffer = np.empty((2 * height, width * n, 3), np.uint8)
        self.full = mujoco.MjrRect(0, 0, width * n, 2 * height)
        self.rgb_only = mujoco.MjrRect(0, height, width * n, height)
        self._ids_cache: dict[tuple[int, int], np.ndarray] = {}

    def render(self, data: mujoco.MjData, with_segmentation: bool) -> tuple[np.ndarray, np.ndarray | None]:
        self.gl.make_current()
        w, h, scn, flags = self.width, self.height, self.scene, self.scene.flags
        seg_ids = []
        for i, cam in enumerate(self.cameras):
            mujoco.mjv_updateScene(self.model, data, self.option, self.perturb, cam, mujoco.mjtCatBit.mjCAT_ALL, scn)
            flags[mujoco.mjtRndFlag.mjRND_SEGMENT] = flags[mujoco.mjtRndFlag.mjRND_IDCOLOR] = False
            mujoco.mjr_render(mujoco.MjrRect(i * w, h, w, h), scn, self.con)
            if with_segmentation:
                flags[mujoco.mjtRndFlag.mjRND_SEGMENT] = flags[mujoco.mjtRndFlag.mjRND_IDCOLOR] = True
                mujoco.mjr_render(mujoco.MjrRect(i * w, 0, w, h), scn, self.con)
                seg_ids.append(self._scene_geom_ids(i))
        flags[mujoco.mjtRndFlag.mjRND_SEGMENT] = flags[mujoco.mjtRndFlag.mjRND_IDCOLOR] = False
        if not with_segmentation:
            rgb = np.empty((h, self.buffer.shape[1], 3), np.uint8)
            mujoco.mjr_readPixels(rgb, None, self.rgb_only, self.con)
            return np.flipud(rgb).copy(), None
        mujoco.mjr_readPixels(self.buffer, None, self.full, self.con)
        img = np.flipud(self.buffer)  # OpenGL rows run bottom-up
        frame = img[:h].copy()
        seg_rgb = img[h:].astype(np.int64)
        index = seg_rgb[..., 0] + (seg_rgb[..., 1] << 8) + (seg_rgb[..., 2] << 16) - 1  # -1 = background
        seg = np.full(index.shape, -1, np.int64)
        for i, ids in enumerate(seg_ids):
            cols = slice(i * w, (i + 1) * w)
            idx = index[:, cols]
            idx = np.where((idx >= 0) & (idx < len(ids) - 1), idx, len(ids) - 1)
            seg[:, cols] = ids[idx]
        return frame, seg

    def _scene_geom_ids(self, camera: int) -> np.ndarray:
        """Model geom id of each scene geom (+ a trailing -1 for background).

        The scene lists the model's visible geoms in model order, so the map only
        changes with the geom count; it is cached per camera and count.
        """
        scn = self.scene
        key = (camera, scn.ngeom)
        ids = self._ids_cache.get(key)
        if ids is None:
            geoms = scn.geoms
            ids = np.array(
                [geoms[j].objid if geoms[j].objtype == mujoco.mjtObj.mjOBJ_GEOM else -1 for j in range(scn.ngeom)]
                + [-1], dtype=np.int64)
            self._ids_cache[key] = ids
        return ids

    def close(self) -> None:
        if self.gl is None:
            return
        self.gl.make_current()  # free the render context in its own GL context
        self.con.free()
        self.gl.free()
        self.gl = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown: the GL library may already be gone
            pass
