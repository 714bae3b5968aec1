"""FileManager: "Delete <file>", where the file is in one of four folders.

A sidebar of four folders (random names and order) plus ``Archive``, a
scrolling file list (7 rows in view), and a toolbar: ``Archive`` moves the
selected file to the Archive folder (reversible: ``Restore`` there moves it
back), ``Delete`` asks for confirmation, then deletes it for good. A file
with a similar name (same stem) is always present as a distractor. The first
file of folder 1 is selected at the start (never the target).

* success: the target file is deleted (from wherever it is);
* irreversible error: any other file is deleted;

Question ``target_folder``: which folder (slot 1-4, top to bottom) holds the
target at the start. Action choices: ``find and delete in folder k`` (open
it, and if the target is there select it, delete it and confirm; 1 wasted
step if it is not there) and ``delete selected file`` (10: the file selected
at the start is never the target).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ..spec import Probe, Question
from .app import GuiApp, Intent, UiState
from .widgets import MUTED, Button, Colour, Dialog, Label, ListItem, Panel, Rect, Screen, ScrollArea, Widget, Window

__all__ = ["FileManagerApp"]

N_FOLDERS = 4
ARCHIVE = N_FOLDERS  # folder index of the Archive
FOLDERS = ("Docs", "Photos", "Music", "Videos", "Work", "School", "Travel", "Games", "Taxes", "Home")
STEMS = ("report", "budget", "notes", "photo", "invoice", "draft", "summary", "backup", "scan", "memo", "slides",
         "data", "poster", "recipe", "travel", "lecture", "resume", "letter", "contract", "plan")
SUFFIXES = ("", "_v2", "_old", "_new", "_2", "_23")
EXTENSIONS: dict[str, Colour] = {
    ".pdf": (200, 50, 50), ".txt": (120, 120, 130), ".jpg": (40, 150, 90), ".png": (40, 120, 160),
    ".doc": (40, 90, 200), ".zip": (170, 130, 40), ".mp3": (150, 60, 170), ".csv": (30, 150, 140),
}
PAGE = 7
ROW_H = 12


@dataclass
class FilesState(UiState):
    folder_names: list[str] = field(default_factory=list)
    folders: list[list[str]] = field(default_factory=list)  # N_FOLDERS + 1 lists; the last is the Archive
    origin: dict[str, int] = field(default_factory=dict)  # archived file -> its folder
    open_folder: int = 0
    selected: str | None = None
    target: str = ""
    target_folder: int = 0  # at the start
    deleted: list[str] = field(default_factory=list)


class FileManagerApp(GuiApp):
    name: ClassVar[str] = "FileManager"
    questions: ClassVar[tuple[Question, ...]] = (
        Question("target_folder", "Which folder holds the file to delete?",
                 tuple(f"folder {i + 1}" for i in range(N_FOLDERS))),
    )
    action_names: ClassVar[tuple[str, ...]] = (*(f"find and delete in folder {i + 1}" for i in range(N_FOLDERS)),
                                               "delete selected file")
    action_costs: ClassVar[dict[str, np.ndarray]] = {
        # rows: find and delete in folder 1..4, delete selected file; columns: folder 1..4 holds the target
        "target_folder": np.vstack([1.0 - np.eye(N_FOLDERS), np.full((1, N_FOLDERS), 10.0)]).astype(np.float32),
    }
    facts: ClassVar[tuple[str, ...]] = ("target", "target_selected", "confirm_dialog", "confirm_target")
    # a folder holds more files than its list shows, so the target may need scrolling: detect < 1
    probes: ClassVar[tuple[Probe, ...]] = tuple(
        Probe("target_folder", "target", (f"folder {i + 1}",), detect=0.8, after_choice=i) for i in range(N_FOLDERS))
    initial_view_choice: ClassVar[int | None] = 0  # folder 1 is open at the start
    default_max_steps: ClassVar[int] = 40

    def sample(self, rng: np.random.Generator) -> FilesState:
        names = [FOLDERS[i] for i in rng.choice(len(FOLDERS), N_FOLDERS, replace=False)]
        counts = [int(c) for c in rng.integers(3, 10, size=N_FOLDERS)]
        exts = list(EXTENSIONS)
        combos = [(stem, suffix, ext) for stem in STEMS for suffix in SUFFIXES for ext in exts]
        picks = [combos[int(i)] for i in rng.choice(len(combos), sum(counts) - 1, replace=False)]
        files = ["".join(p) for p in picks]
        # the distractor: the target's stem and extension with another suffix
        target = files[0]
        stem, _, ext = picks[0]
        others = [f"{stem}{x}{ext}" for x in SUFFIXES if f"{stem}{x}{ext}" not in files]
        files.append(others[int(rng.integers(len(others)))])
        order = rng.permutation(len(files))
        folders, start = [], 0
        for c in counts:
            folders.append(sorted(files[int(i)] for i in order[start : start + c]))
            start += c
        folders.append([])
        target_folder = next(k for k, f in enumerate(folders) if target in f)
        if folders[0][0] == target:  # the preselected file is never the target
            folders[0][0], folders[0][1] = folders[0][1], folders[0][0]
        return FilesState(folder_names=names, folders=folders, selected=folders[0][0], target=target,
                          target_folder=target_folder, status=f"{len(folders[0])} items")

    def instruction(self) -> str:
        return f"Delete {self.state.target}"

    def _where(self, name: str) -> int:
        return next(k for k, f in enumerate(self.state.folders) if name in f)

    # ------------------------------------------------------------------ view
    def view(self) -> Screen:
        s: FilesState = self.state
        win = Window("window", Rect(0, 0, 128, 128), "Files", colour=(60, 70, 90))
        in_archive = s.open_folder == ARCHIVE
        has_sel = s.selected is not None
        win.children.append(Button("archive", Rect(2, 13, 34, 12), "Restore" if in_archive else "Archive",
                                   enabled=has_sel))
        win.children.append(Button("delete", Rect(39, 13, 30, 12), "Delete", style="danger", enabled=has_sel))
        side = Panel("sidebar", Rect(2, 27, 32, 2 + PAGE * ROW_H))
        for k, fname in enumerate([*s.folder_names, "Archive"]):
            wid = "folder:archive" if k == ARCHIVE else f"folder:{k}"
            side.children.append(ListItem(wid, Rect(3, 28 + k * ROW_H, 30, ROW_H), fname, selected=k == s.open_folder))
        win.children.append(side)
        files = s.folders[s.open_folder]
        offset = s.scroll.get("files", 0)
        area = ScrollArea("files", Rect(36, 27, 90, 2 + PAGE * ROW_H), offset=offset, total=len(files), page=PAGE,
                          row_h=ROW_H)
        rows: list[Widget] = []
        for row, name in enumerate(files[offset : offset + PAGE]):
            tags = ("target", "target_selected") if name == s.target and s.selected == name else (
                ("target",) if name == s.target else ())
            rows.append(ListItem(f"file:{name}", area.row_rect(row), name, facts=tags, selected=name == s.selected,
                                 icon=EXTENSIONS[name[name.rindex("."):]]))
        area.children[:0] = rows
        win.children.append(area)
        win.children.append(Label("", Rect(2, 115, 124, 12), s.status, colour=MUTED))
        overlay = None
        if s.dialog == "confirm" and s.selected is not None:
            tags = ("confirm_dialog", "confirm_target") if s.selected == s.target else ("confirm_dialog",)
            overlay = Dialog("dialog", Rect(8, 34, 112, 64), "Delete file?", facts=tags, colour=(200, 44, 44))
            overlay.children += [
                Label("", Rect(12, 47, 104, 11), s.selected),
                Label("", Rect(12, 58, 104, 11), "This cannot be undone.", colour=MUTED),
                Button("dialog:delete", Rect(14, 78, 44, 13), "Delete", style="danger"),
                Button("dialog:cancel", Rect(70, 78, 44, 13), "Cancel"),
            ]
        return Screen(win, overlay, modal=overlay is not None)

    # ------------------------------------------------------------------ events
    def on_click(self, widget: Widget) -> None:
        s: FilesState = self.state
        wid = widget.id
        if wid.startswith("folder:"):
            k = ARCHIVE if wid == "folder:archive" else int(wid[7:])
            if k != s.open_folder:
                s.open_folder, s.selected = k, None
                s.scroll["files"] = 0
            s.status = f"{len(s.folders[k])} items"
        elif wid.startswith("file:"):
            s.selected = wid[5:]
            s.status = f"Selected {s.selected}"
        elif wid == "archive" and s.selected is not None:
            name, here = s.selected, s.open_folder
            s.folders[here].remove(name)
            if here == ARCHIVE:
                dest = s.origin.pop(name)
                s.status = f"Restored {name}"
            else:
                dest = ARCHIVE
                s.origin[name] = here
                s.status = f"Archived {name}"
            s.folders[dest] = sorted([*s.folders[dest], name])
            s.selected = None
            self._clamp_scroll()
        elif wid == "delete" and s.selected is not None:
            s.dialog = "confirm"
        elif wid == "dialog:cancel":
            s.dialog = None
        elif wid == "dialog:delete" and s.selected is not None:
            name = s.selected
            s.folders[s.open_folder].remove(name)
            s.origin.pop(name, None)
            s.deleted.append(name)
            s.dialog, s.selected = None, None
            if name == s.target:
                self.finish("success", f"Deleted {name}")
            else:
                self.finish("error", f"Deleted {name}, not {s.target} (irreversible)")

    def _clamp_scroll(self) -> None:
        s: FilesState = self.state
        s.scroll["files"] = max(0, min(s.scroll.get("files", 0), len(s.folders[s.open_folder]) - PAGE))

    # ------------------------------------------------------------------ truth and labels
    def hidden(self) -> dict[str, Any]:
        s: FilesState = self.state
        return {
            "target": s.target,
            "target_folder": s.target_folder,
            "target_folder_name": s.folder_names[s.target_folder],
            "target_now_in": None if s.target in s.deleted else ([*s.folder_names, "Archive"][self._where(s.target)]),
            "folders": {n: list(f) for n, f in zip([*s.folder_names, "Archive"], s.folders)},
            "deleted": list(s.deleted),
        }

    def answers(self) -> dict[str, int]:
        return {"target_folder": self.state.target_folder}

    def question_text(self) -> dict[str, str]:
        return {"target_folder": f"Which folder holds {self.state.target}?"}

    def answer_labels(self) -> dict[str, list[str]]:
        return {"target_folder": list(self.state.folder_names)}

    def labels(self) -> tuple[str, ...]:
        s: FilesState = self.state
        files = sorted({f for folder in s.folders for f in folder} | set(s.deleted))
        return (*s.folder_names, "Archive", *files, "Restore", "Delete")

    # ------------------------------------------------------------------ scripts
    def _select(self, folder: int, screen: Screen) -> Intent | None:
        s: FilesState = self.state
        if s.dialog is not None:
            return Intent("click", "dialog:cancel")
        if s.open_folder != folder:
            return Intent("click", "folder:archive" if folder == ARCHIVE else f"folder:{folder}")
        files = s.folders[folder]
        if s.target not in files or s.selected == s.target:
            return None
        return self.reveal(screen, "files", files.index(s.target)) or Intent("click", f"file:{s.target}")

    def choice_intent(self, choice: int, screen: Screen) -> Intent | None:
        s: FilesState = self.state
        if choice < N_FOLDERS:
            if s.selected == s.target and s.open_folder == choice and s.target not in s.deleted:
                return Intent("click", "dialog:delete") if s.dialog == "confirm" else Intent("click", "delete")
            return self._select(choice, screen)
        if s.dialog == "confirm":
            return Intent("click", "dialog:delete")
        return Intent("click", "delete") if s.selected is not None else None

    def expert_intent(self, screen: Screen) -> Intent | None:
        s: FilesState = self.state
        if s.target in s.deleted:
            return None
        if s.selected == s.target and s.open_folder == self._where(s.target):
            return Intent("click", "dialog:delete") if s.dialog == "confirm" else Intent("click", "delete")
        return self._select(self._where(s.target), screen)
