"""What the two trainers (:mod:`genex.world_model.train`, :mod:`genex.policy.train`) share: processes that
start together fail together.

Both run as one process or as the ranks of ``accelerate launch``. Each rank checks its options, data and run
folder before training; a rank that failed alone would leave the others waiting in their first collective
until a timeout. :func:`fail_together` is one all-gather of every rank's start-up error, after which every
rank stops or none does.

The rest of their machinery only looks alike: the world model's ``auto`` precision picks bf16 on CPUs that
compute it natively, the policy's never on a CPU; the world model's schedule is by step, the policy's may be
by wall-clock minutes; their resumable states differ (``state/`` safetensors beside a ``run.json`` vs
``training_state.pt`` inside the checkpoint folder). Merging those would change one trainer's runs.
"""

from __future__ import annotations

import socket
from typing import Any

__all__ = ["TrainingInputError", "fail_together"]


class TrainingInputError(ValueError):
    """Another process of a distributed run could not start (its data or run folder): this one stops with it."""


def fail_together(num_processes: int, error: BaseException | None) -> None:
    """Raise on every process if any process failed its start-up checks (one collective, no hang).

    Where every failing process failed alike (the usual case: the same files), each re-raises its own error;
    otherwise all raise one :class:`TrainingInputError` naming the processes, their hosts and their errors. The
    raised error is marked as shared by every process (``collective``, which ``genex train-world-model`` and
    ``genex train-policy`` read), so a command prints the main process' only.
    """
    if num_processes > 1:
        from accelerate.utils import gather_object

        errors: list[Any] = gather_object([(None if error is None else str(error), socket.gethostname())])
    else:
        errors = [(None if error is None else str(error), "")]
    failed = {msg for msg, _ in errors if msg is not None}
    if not failed:
        return
    if error is None or failed != {str(error)}:
        error = TrainingInputError("; ".join(f"process {rank} (of {num_processes}, on {host}) could not start: {msg}"
                                             for rank, (msg, host) in enumerate(errors) if msg is not None))
    error.collective = True  # type: ignore[attr-defined]
    raise error
