"""Mock GUI apps (installed as ``genex.envs.gui``): small desktop-like apps with hidden state.

Five apps drawn with a small widget toolkit of our own and rendered to an RGB
screen (128x128 by default) with NumPy and Pillow's built-in font:

* ``genex/SettingsTabs-v0``: "Turn on <setting>"; the setting is in one of four tabs;
* ``genex/EditDocument-v0``: "Change the name to <X> and the phone to <Y>, then save";
* ``genex/TicketShop-v0``: "Buy a ticket to <city> for at most $<price>"; Buy is irreversible;
* ``genex/FileManager-v0``: "Delete <file>"; Delete is irreversible, Archive is not;
* ``genex/MailCompose-v0``: "Save this message to Drafts" / "Open the Print settings"; the toolbar
  buttons show only glyphs, and two of them (send, delete) are irreversible.

Modules: :mod:`.font` (text), :mod:`.render` (display lists to pixels),
:mod:`.widgets` (toolkit), :mod:`.editing` (text fields), :mod:`.app` (the app
contract), one module per app, :mod:`.actions` (action space and helpers),
:mod:`.env` (the Gymnasium envs), :mod:`.users` (scripted users). Speed: ``bench/env_speed.py``. Importing this package is cheap (registration only);
this package never imports torch.
"""

from __future__ import annotations

from gymnasium.envs.registration import register, registry

__all__ = ["GUI_ENV_IDS", "register_gui_envs"]

GUI_ENV_IDS: tuple[str, ...] = (
    "genex/SettingsTabs-v0",
    "genex/EditDocument-v0",
    "genex/TicketShop-v0",
    "genex/FileManager-v0",
    "genex/MailCompose-v0",
)


def register_gui_envs() -> None:
    """Register the GUI envs under ``genex/`` (ids already registered are left alone).

    Truncation is handled inside the envs (``max_steps``) so snapshots capture it: no TimeLimit wrapper.
    """
    for env_id in GUI_ENV_IDS:
        if env_id in registry:
            continue
        name = env_id.split("/")[1].removesuffix("-v0")
        register(id=env_id, entry_point=f"genex.envs.gui.env:{name}Env", disable_env_checker=False)
