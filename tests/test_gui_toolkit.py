"""The GUI toolkit on its own: font, text editing, display-list painting, widgets and hit-testing."""

from __future__ import annotations

import numpy as np
import pytest

from genex.envs.gui.editing import TextValue
from genex.envs.gui.font import FONT_CHARSET, LINE_HEIGHT, fit_text, text_mask, text_width, undrawable
from genex.envs.gui.render import DisplayList, Painter
from genex.envs.gui.widgets import (
    Button, Dialog, Label, ListItem, Menu, MenuItem, Rect, Screen, ScrollArea, TextField, Window,
)


def test_font_charset_and_measurement():
    assert undrawable("Hello, World! $42 (a-b)") == []
    assert undrawable("café\tx") == ["\t", "é"]
    assert set(FONT_CHARSET) >= set("{}[]\":,\\")  # JSON fits the accessibility Text space
    assert text_width("") == 0 < text_width("a") < text_width("aa")
    assert fit_text("Notifications", 1000) == "Notifications"
    short = fit_text("Notifications", 30)
    assert short.endswith("..") and text_width(short) <= 30


def test_text_masks_are_cached_and_scaled():
    m1, m4 = text_mask("Save", 1), text_mask("Save", 4)
    assert m1.dtype == np.uint8 and m1.shape[0] == LINE_HEIGHT and m4.shape[0] == 4 * LINE_HEIGHT
    assert m1.max() > 200 and not m1.flags.writeable
    assert text_mask("Save", 1) is m1  # cached


def test_text_editing_rules():
    tv = TextValue("Ana Silva", cursor=9)
    tv.select_all()
    tv.insert("Bo")
    assert (tv.value, tv.cursor, tv.selection) == ("Bo", 2, None)
    assert tv.key("left") and tv.cursor == 1
    tv.insert("x")
    assert tv.value == "Bxo"
    assert tv.key("backspace") and tv.value == "Bo"
    assert tv.key("end") and tv.key("delete") and tv.value == "Bo"  # delete at the end: nothing
    assert not tv.key("enter")  # not an editing key
    long = TextValue("", max_length=4)
    long.insert("abcdef")
    assert long.value == "abcd"


def test_painter_scales_and_caches():
    dl = DisplayList()
    dl.fill(0, 0, 128, 128, (255, 255, 255))
    dl.fill(10, 10, 20, 5, (255, 0, 0))
    dl.text(2, 40, "Hello", (0, 0, 0), 100)
    small = Painter(128).paint(dl)
    assert small.shape == (128, 128, 3) and small.dtype == np.uint8
    assert tuple(small[12, 15]) == (255, 0, 0) and tuple(small[5, 5]) == (255, 255, 255)
    assert small[40:50, 2:30].min() < 100  # text drawn
    painter = Painter(256)
    big = painter.paint(dl)
    assert big.shape == (256, 256, 3) and tuple(big[24, 30]) == (255, 0, 0)
    assert painter.paint(dl) is big  # same ops: cached frame
    odd = Painter(100).paint(dl)
    assert odd.shape == (100, 100, 3)


def test_screen_hit_testing_and_overlays():
    win = Window("window", Rect(0, 0, 128, 128), "App")
    save = Button("save", Rect(10, 20, 30, 12), "Save")
    off = Button("off", Rect(50, 20, 30, 12), "Off", enabled=False)
    field = TextField("field:name", Rect(10, 40, 60, 12), "Name", value=TextValue("Bo"))
    area = ScrollArea("list", Rect(10, 60, 100, 50), offset=0, total=10, page=4, row_h=12)
    area.children[:0] = [ListItem(f"row:{i}", area.row_rect(i), f"Row {i}") for i in range(4)]
    win.children += [save, off, field, area, Label("", Rect(0, 115, 128, 12), "status")]
    screen = Screen(win)
    assert screen.hit(15, 25) is save
    assert screen.hit(55, 25) is None  # disabled buttons ignore clicks
    assert screen.hit(15, 62).id == "row:0"
    assert screen.hit(107, 61).id == "list:up"
    assert screen.scroll_area_at(50, 80) is area and area.max_offset == 6
    ids = [w.id for w in screen.elements()]
    assert ids == ["save", "field:name", "row:0", "row:1", "row:2", "row:3", "list:up", "list:down"]
    dialog = Dialog("dialog", Rect(20, 30, 80, 50), "Sure?")
    ok = Button("ok", Rect(30, 60, 30, 12), "OK")
    dialog.children.append(ok)
    modal = Screen(win, dialog, modal=True)
    assert modal.hit(15, 25) is None and modal.hit(35, 65) is ok  # the window is blocked
    assert [w.id for w in modal.elements()] == ["ok"]
    visible = {w.id for w in modal.visible_widgets()}
    assert "save" in visible and "row:0" not in visible  # the dialog covers the list's first row
    assert ("D",) in modal.display_list(None).ops and ("D",) not in screen.display_list(None).ops  # dimmed
    menu = Menu("menu", Rect(10, 30, 40, 24), children=[MenuItem("option:a", Rect(11, 31, 38, 11), "A")])
    assert Screen(win, menu).hit(20, 35).id == "option:a"


def test_widget_states_for_accessibility():
    assert Button("b", Rect(0, 0, 5, 5), enabled=False).state() == {"enabled": False}
    tf = TextField("f", Rect(0, 0, 50, 10), value=TextValue("abc", cursor=3, anchor=0), focused=True)
    assert tf.state() == {"value": "abc", "focused": True, "selection": [0, 3]}


@pytest.mark.parametrize("text", ["", "x", "A much longer label than fits"])
def test_label_never_overflows_its_rect(text):
    dl = DisplayList()
    Label("", Rect(10, 10, 30, 12), text).paint(dl, None)
    for op in dl.ops:
        assert op[0] == "T" and op[1] + op[5] <= 40



def test_prefix_reuse_paints_the_same_pixels_as_a_fresh_painter():
    """Resuming from a saved canvas of a shared op prefix must not change a single pixel."""
    import gymnasium as gym

    import genex.envs
    from genex.envs.gui.render import Painter

    for env_id in genex.envs.GUI_ENV_IDS:
        env = gym.make(env_id).unwrapped
        driver = genex.envs.make_driver(env_id, "random")
        resumed = 0
        for seed in range(4):
            obs, info = env.reset(seed=seed)
            driver.reset(env, seed=seed)
            for _ in range(20):
                ops = env.screen.display_list(env.app.state.focus).key()
                fresh = Painter(128)._rasterise(ops)  # no previous frame: paints every op
                np.testing.assert_array_equal(obs["image"], fresh)
                resumed += len(env._painter._checkpoints) > 1
                obs, r, term, trunc, info = env.step(driver.act(obs, info))
                if term or trunc:
                    break
        assert resumed > 0
