"""The ``batched`` executor: ``B`` episodes in lockstep in a process, their model calls sent as one batch.

:func:`batched_results` runs them in the calling process; :func:`batched_process_results` in each of several
spawned processes (one torch thread each: on a small shared CPU, torch on several threads loses more to
waiting for cores than it gains), process ``i`` taking the keys ``i, i + N, ...``.

Each of ``B`` episode threads runs :func:`~genex.compare.episode.run_episode` unchanged (its own env and
planner). The planners get proxies of the shared world model and policy: a call on a proxy is queued and its
thread waits. When every live episode thread waits on a call (or has no episode left), the coordinator (the
thread that iterates :func:`batched_results`, the caller's) sends the pending calls of one kind and model as
one call of the real model:

* world model: the ``imagine_batch`` calls of the same length ``T`` go to
  :meth:`~genex.world_model.model.DiffusionWorldModel.imagine_calls`, which draws each call's noise from that
  call's own seed, so a call imagines what it would alone (up to the float arithmetic of a larger batch);
* policy: the ``answer`` calls go to :meth:`~genex.policy.tiny.TinyPolicy.answer_many` (one vision batch, one
  fusion batch over all calls, whatever their prompts).

then splits the results and wakes the threads. Models without those methods (copy-last, other policies) are
called once per call, still from the coordinator alone: the real models are only ever used by one thread.

What a batch holds does not depend on thread timing: a batch is sent only when every live thread waits, so it
holds one call of every running episode, stacked in the order of the episodes' keys. The results depend on
``B`` only through the float arithmetic of batched convolutions (``bench/batched_compare.py`` measures the share
of episodes that differ). An episode that raises is reported with its key (:class:`EpisodeFailure`, once the
others have finished); interrupting (Ctrl-C) or closing the generator stops every episode thread at its next
model call.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import traceback
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from .config import CompareConfig, EpisodeKey

log = logging.getLogger(__name__)

__all__ = ["EpisodeFailure", "Batcher", "batched_results"]


class EpisodeFailure(RuntimeError):
    """Episodes of a batched run raised; ``failures`` lists ``(key, exception)``. Raised after the other
    episodes finished (their rows are written); chained from the first episode's exception."""

    def __init__(self, failures: list[tuple[EpisodeKey, BaseException]]) -> None:
        self.failures = failures
        lines = "; ".join(f"{k.slug}: {type(e).__name__}: {e}" for k, e in failures)
        super().__init__(f"{len(failures)} episode(s) failed: {lines}")


class _Stopped(BaseException):
    """Raised in an episode thread waiting on a model call when the run stops (interrupt, error, close).
    A BaseException: episode code that catches ``Exception`` must not swallow it."""


@dataclass
class _Call:
    kind: str  # "imagine" or "answer"
    model: Any  # the real model
    args: tuple[Any, ...]
    order: int  # the episode's index among the run's keys: the order calls are stacked in
    done: bool = False
    result: Any = None
    error: BaseException | None = None


@dataclass
class BatchStats:
    """Calls the proxies received and calls of the real models made for them, per kind."""

    calls: dict[str, int] = field(default_factory=lambda: {"imagine": 0, "answer": 0})
    batches: dict[str, int] = field(default_factory=lambda: {"imagine": 0, "answer": 0})
    items: dict[str, int] = field(default_factory=lambda: {"imagine": 0, "answer": 0})
    #: seconds the coordinator spent in the real models, per kind (the rest of a run: envs, planners, Python)
    seconds: dict[str, float] = field(default_factory=lambda: {"imagine": 0.0, "answer": 0.0})


class Batcher:
    """Collects the model calls of episode threads and runs them in batches (see the module docstring).

    Episode threads call :meth:`thread_started` / :meth:`thread_done` around their work and :meth:`submit`
    (through the proxies) for each model call; the coordinator calls :meth:`wait_and_flush` in a loop.
    """

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.live = 0  # episode threads that have not exited
        self.pending: list[_Call] = []
        self.stopping = False
        self.local = threading.local()  # per episode thread: .order (the key's index), .batched (True)
        self.stats = BatchStats()

    # -- episode threads ----------------------------------------------------------------------------------
    def thread_started(self) -> None:
        with self.cond:
            self.live += 1

    def thread_done(self) -> None:
        with self.cond:
            self.live -= 1
            self.cond.notify_all()

    def in_episode_thread(self) -> bool:
        return bool(getattr(self.local, "batched", False))

    def submit(self, kind: str, model: Any, *args: Any) -> Any:
        """Queue a call of ``model`` and wait for its result (raised if it failed)."""
        call = _Call(kind, model, args, order=self.local.order)
        with self.cond:
            if self.stopping:
                raise _Stopped()
            self.pending.append(call)
            self.stats.calls[kind] += 1
            self.cond.notify_all()
            while not call.done:
                self.cond.wait()
        if call.error is not None:
            raise call.error
        return call.result

    # -- the coordinator ----------------------------------------------------------------------------------
    def ready(self) -> bool:
        """Every live episode thread waits on a call (hold ``cond``)."""
        return bool(self.pending) and len(self.pending) >= self.live

    def flush(self) -> None:
        """Run the pending calls (every live thread is waiting on one) and wake their threads."""
        with self.cond:
            calls, self.pending = sorted(self.pending, key=lambda c: c.order), []
        groups: dict[tuple[Any, ...], list[_Call]] = {}
        for c in calls:
            groups.setdefault(_group_key(c), []).append(c)
        try:
            for group in groups.values():
                self._run_group(group)
        finally:
            with self.cond:
                for c in calls:
                    if not c.done:  # interrupted mid-batch: the thread stops
                        c.error, c.done = _Stopped(), True
                self.cond.notify_all()

    def _run_group(self, group: list[_Call]) -> None:
        t0 = time.perf_counter()
        try:
            self._run_calls(group)
        finally:
            self.stats.seconds[group[0].kind] += time.perf_counter() - t0

    def _run_calls(self, group: list[_Call]) -> None:
        kind, model = group[0].kind, group[0].model
        many = getattr(model, "imagine_calls" if kind == "imagine" else "answer_many", None)
        if many is not None and len(group) > 1 and group[0].args[-1] == "batchable":
            try:
                results = many([c.args[:3] for c in group])  # (contexts, actions, seed) / (images, prompt, questions)
                self.stats.batches[kind] += 1
                self.stats.items[kind] += len(group)
                for c, r in zip(group, results):
                    c.result = r.copy() if isinstance(r, np.ndarray) else r
                    self._finish(c)
                return
            except Exception:  # one call's bad input must fail that episode only: run them one by one
                log.debug("batched %s call failed; running its %d calls one by one", kind, len(group), exc_info=True)
        for c in group:
            try:
                c.result = _call_alone(c)
            except Exception as e:
                c.error = e
            self.stats.batches[kind] += 1
            self.stats.items[kind] += 1
            self._finish(c)

    def _finish(self, call: _Call) -> None:
        with self.cond:
            call.done = True
            self.cond.notify_all()

    def stop(self) -> None:
        """Stop: every waiting (and every later) call raises :class:`_Stopped` in its episode thread."""
        with self.cond:
            self.stopping = True
            for c in self.pending:
                c.error, c.done = _Stopped(), True
            self.pending = []
            self.cond.notify_all()


def _group_key(c: _Call) -> tuple[Any, ...]:
    if c.kind == "imagine":  # (contexts, actions, seed, tag): calls of one length T batch together
        actions = c.args[1]
        steps = actions.shape[1] if isinstance(actions, np.ndarray) else (len(actions[0]) if len(actions) else 0)
        return ("imagine", id(c.model), steps, c.args[-1])
    return ("answer", id(c.model), c.args[-1])


def _call_alone(c: _Call) -> Any:
    if c.kind == "imagine":
        contexts, actions, seed, _ = c.args
        return c.model.imagine_batch(contexts, actions, seed=seed)
    images, prompt, questions, kwargs, _ = c.args
    return c.model.answer(images, prompt, questions, **kwargs)


class WorldModelProxy:
    """What an episode's planner gets for the shared world model: ``imagine`` / ``imagine_batch`` go through the
    :class:`Batcher`; everything else is the real model's."""

    def __init__(self, batcher: Batcher, model: Any) -> None:
        self._batcher, self._model = batcher, model

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)

    def imagine_batch(self, contexts: np.ndarray, actions: Sequence[Sequence[Any]] | np.ndarray,
                      seed: int | None = None) -> np.ndarray:
        if not isinstance(actions, np.ndarray):
            actions = [list(a) for a in actions]
        return self._batcher.submit("imagine", self._model, np.asarray(contexts), actions, seed, "batchable")

    def imagine(self, context_frames: np.ndarray, actions: Sequence[Any], num_samples: int = 1,
                seed: int | None = None) -> np.ndarray:
        """As the real model's ``imagine`` (``imagine_batch`` of ``num_samples`` copies), batched."""
        from genex.world_model.protocol import check_context

        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        ctx = check_context(context_frames)
        return self.imagine_batch(np.repeat(ctx[None], num_samples, axis=0), [list(actions)] * num_samples, seed=seed)

    def bind(self, env: Any) -> "WorldModelProxy":
        bind = getattr(self._model, "bind", None)
        if bind is not None:
            bind(env)  # the same env family for every episode using this model: the same names
        return self


class PolicyProxy:
    """What an episode's planner gets for the shared policy: ``answer`` goes through the :class:`Batcher`;
    ``reset`` forgets nothing (the shared policy's visual history is a cache keyed by frame content)."""

    def __init__(self, batcher: Batcher, policy: Any) -> None:
        self._batcher, self._policy = batcher, policy

    def __getattr__(self, name: str) -> Any:
        return getattr(self._policy, name)

    def reset(self) -> None:
        """Nothing to forget per episode (see the class docstring)."""

    def answer(self, images: Sequence[Any], prompt: str, questions: Sequence[Any], actions: Sequence[str] = (),
               use_history: bool = False) -> Any:
        if use_history:
            raise ValueError("answer(use_history=True) reads the episode's remembered frames; the batched executor "
                             "shares one policy between episodes: use another executor")
        kwargs = {"actions": actions} if actions else {}
        tag = "alone" if actions else "batchable"  # action requests are answered one by one
        return self._batcher.submit("answer", self._policy, list(images), prompt, list(questions), kwargs, tag)


class _ProxyModels:
    """What the batched run's episodes get as ``run_episode(models=...)``: loads (once, under a lock)
    through the real cache and hands episode threads proxies of what it loaded."""

    def __init__(self, inner: Any, batcher: Batcher) -> None:
        self.inner, self.batcher, self.lock = inner, batcher, threading.Lock()
        self.proxies: dict[int, Any] = {}

    def get(self, kind: str, path: str, env: Any) -> Any:
        with self.lock:
            model = self.inner.get(kind, path, env)
            if not self.batcher.in_episode_thread():
                return model
            if id(model) not in self.proxies:
                if kind == "policy":
                    self.proxies[id(model)] = PolicyProxy(self.batcher, model)
                elif hasattr(model, "imagine_batch") and getattr(model, "context_is_state", True):
                    self.proxies[id(model)] = WorldModelProxy(self.batcher, model)
                else:  # nothing to batch (e.g. copy-last): the model itself
                    self.proxies[id(model)] = model
            return self.proxies[id(model)]

    def fidelity(self, *args: Any, **kwargs: Any) -> Any:
        with self.lock:
            return self.inner.fidelity(*args, **kwargs)


def batched_results(cfg: CompareConfig, todo: Sequence[EpisodeKey], out: Any, batch: int, threads: int,
                    fault: Callable[[EpisodeKey], None] | None = None,
                    batcher: Batcher | None = None) -> Iterator[dict[str, Any]]:
    """Run ``todo`` as ``min(batch, len(todo))`` episode threads in lockstep in this process, yielding each row as
    its episode ends; torch runs with ``threads`` threads meanwhile. ``fault(key)`` (tests) runs at the start of
    each episode. Raises :class:`EpisodeFailure` at the end if episodes raised; stops every episode on an
    interrupt/close."""
    import torch

    from . import episode as episode_mod

    os.environ.setdefault("MUJOCO_GL", "egl")
    batcher = batcher or Batcher()
    queue = list(enumerate(todo))
    rows: list[dict[str, Any]] = []
    failures: list[tuple[int, EpisodeKey, BaseException]] = []
    queue_lock = threading.Lock()

    def next_key() -> tuple[int, EpisodeKey] | None:
        with queue_lock:
            return queue.pop(0) if queue and not batcher.stopping else None

    def slot() -> None:
        batcher.local.batched = True
        try:
            while (item := next_key()) is not None:
                batcher.local.order, key = item
                try:
                    if fault is not None:
                        fault(key)
                    row = episode_mod.run_episode(cfg, key, out, models=proxies)
                except _Stopped:
                    return
                except Exception as e:  # reported with its key once the others are done
                    log.error("episode %s failed:\n%s", key.slug, traceback.format_exc())
                    with batcher.cond:
                        failures.append((batcher.local.order, key, e))
                        batcher.cond.notify_all()
                    continue
                with batcher.cond:
                    rows.append(row)
                    batcher.cond.notify_all()
        finally:
            batcher.thread_done()

    proxies = _ProxyModels(episode_mod._MODELS, batcher)
    old_threads = torch.get_num_threads()
    torch.set_num_threads(max(1, threads))
    workers = [threading.Thread(target=slot, name=f"genex-episode-{i}", daemon=True)
               for i in range(max(1, min(batch, len(todo))))]
    try:
        for w in workers:
            batcher.thread_started()
            w.start()
        while True:
            with batcher.cond:
                while not (rows or batcher.ready() or batcher.live == 0):
                    batcher.cond.wait(timeout=1.0)
                finished, rows[:] = list(rows), []
                ready, over = batcher.ready(), batcher.live == 0
            yield from finished  # the caller appends each row as its episode ends
            if ready:
                batcher.flush()
            elif over and not finished:
                break
        failures.sort(key=lambda f: f[0])
        if failures:
            raise EpisodeFailure([(k, e) for _, k, e in failures]) from failures[0][2]
    finally:
        batcher.stop()
        for w in workers:
            w.join(timeout=30)
        if any(w.is_alive() for w in workers):
            log.warning("episode threads still running after the batched run stopped (they end at their next "
                        "model call)")
        torch.set_num_threads(old_threads)
        log.info("batched run: %s", batcher.stats)


def _process_main(cfg: CompareConfig, out: Any, batch: int, fault: str | None, keys: list[EpisodeKey],
                  results: Any) -> None:
    """One worker process of :func:`batched_process_results`: ``keys`` as ``batch`` episode threads on one torch
    thread, sending ``("row", row)``, ``("failed", key, text)``, ``("crashed", text)``
    and at last ``("done", pid)`` to ``results``."""
    import torch

    from .faults import raise_injected

    torch.set_num_threads(1)
    batcher = Batcher()
    try:
        gen = batched_results(cfg, keys, out, batch, 1, fault=(lambda k: raise_injected(fault, k)) if fault else None,
                              batcher=batcher)
        for row in gen:
            results.put(("row", row))
    except EpisodeFailure as e:
        for k, exc in e.failures:
            results.put(("failed", k, f"{type(exc).__name__}: {exc}"))
    except BaseException as e:  # noqa: BLE001 (a crash of the worker itself: reported, then the process ends)
        results.put(("crashed", f"{type(e).__name__}: {e}\n{traceback.format_exc()}"))
    finally:
        results.put(("stats", asdict(batcher.stats)))
        results.put(("done", os.getpid()))


class _WorkerError(RuntimeError):
    """What a worker process reported for an episode (the exception itself stays in the worker's log)."""


def batched_process_results(cfg: CompareConfig, todo: Sequence[EpisodeKey], out: Any, batch: int, workers: int,
                            fault: str | None = None) -> Iterator[dict[str, Any]]:
    """``workers`` spawned processes, each one torch thread and ``batch`` episodes in lockstep (as
    :func:`batched_results`); process ``i`` runs the keys ``todo[i::workers]`` (so which episodes share a batch
    does not depend on timing). Yields each row as its episode ends. Raises :class:`EpisodeFailure` once the others are done; a worker that dies ends the run (rerun to resume)."""
    import queue as queue_mod
    from multiprocessing import get_context

    ctx = get_context("spawn")
    results = ctx.Queue()
    workers = max(1, min(workers, len(todo)))
    procs = [ctx.Process(target=_process_main, args=(cfg, str(out) if out is not None else None, batch, fault,
                                                     list(todo[i::workers]), results), daemon=True,
                         name=f"genex-batched-{i}") for i in range(workers)]
    failures: list[tuple[EpisodeKey, BaseException]] = []
    crashed: list[str] = []
    done: set[int] = set()
    stats = BatchStats()
    try:
        for p in procs:
            p.start()
        while len(done) < len(procs):
            try:
                msg = results.get(timeout=1.0)
            except queue_mod.Empty:
                dead = [p for p in procs if p.exitcode is not None and p.pid not in done]
                if dead:  # give its last messages a moment to arrive
                    try:
                        msg = results.get(timeout=5.0)
                    except queue_mod.Empty:
                        raise RuntimeError(f"a batched worker process died (exit code {dead[0].exitcode}); rerun "
                                           "with the same --out to resume") from None
                else:
                    continue
            if msg[0] == "row":
                yield msg[1]
            elif msg[0] == "failed":
                failures.append((msg[1], _WorkerError(msg[2])))
            elif msg[0] == "crashed":
                crashed.append(msg[1])
            elif msg[0] == "stats":
                for part, values in msg[1].items():
                    for kind, v in values.items():
                        getattr(stats, part)[kind] += v
            elif msg[0] == "done":
                done.add(msg[1])
        if crashed:
            raise RuntimeError(f"a batched worker process failed: {crashed[0]}")
        if failures:
            order = {k: i for i, k in enumerate(todo)}
            failures.sort(key=lambda f: order.get(f[0], 0))
            raise EpisodeFailure(failures) from failures[0][1]
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
        for p in procs:
            p.join(timeout=10)
        log.info("batched run (%d processes): %s", len(procs), stats)
