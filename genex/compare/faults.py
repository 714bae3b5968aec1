"""Fault injection for the executors' tests (a leaf module: the executors import it, it imports nothing of theirs).

``GENEX_TEST_FAULT`` holds ``<mode>:<seed>:<marker path>`` specs, several joined by ``,``. The driver reads it
and hands it to every worker (a Ray worker does not see environment variables set after Ray started); ignored
inline. Modes, for the episodes of ``seed``:

* ``exit``: the first attempt's worker process dies (``os._exit``) right after the episode's first real step;
* ``exit-late``: the first attempt runs its whole episode (traces written), then dies before the row is returned.
  The marker file, created exclusively (with the dying pid), lets the retries live;
* ``raise``: every attempt raises (a genuine error: not retried); each appends ``<slug> <pid>`` to the marker.

The batched executor honours ``raise`` only (its episodes share a process: ``exit`` would end them all).
"""

from __future__ import annotations

import os

from .config import EpisodeKey

__all__ = ["FAULT_ENV", "raise_injected"]

#: the environment variable the tests set; never set in normal use
FAULT_ENV = "GENEX_TEST_FAULT"


def raise_injected(fault: str | None, key: EpisodeKey) -> None:
    """The ``raise`` mode of :data:`FAULT_ENV` for ``key``: note the attempt in the marker, then raise."""
    for spec in (fault or "").split(","):
        if not spec:
            continue
        mode, seed, marker = spec.split(":", 2)
        if mode == "raise" and int(seed) == key.seed:
            with open(marker, "a") as f:
                f.write(f"{key.slug} {os.getpid()}\n")
            raise RuntimeError(f"{FAULT_ENV}: injected error in {key.slug}")
