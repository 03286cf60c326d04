"""Worker processes for ``--jobs``: one place that starts them, the same way for export and validate."""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import pickle
from collections.abc import Iterable

from . import notices
from .errors import PluginError
from .plugins import Exporter, adopt_registered, registered_exporters

__all__ = ["process_pool"]


def process_pool(jobs: int, exporters_used: Iterable[str]) -> concurrent.futures.ProcessPoolExecutor:
    """A pool of ``jobs`` fresh interpreters that know this process's exporters.

    spawn, not fork: forking a process that has already run torch's thread
    pools can deadlock. A fresh interpreter finds entry-point plugins by itself
    but not exporters added with ``register_exporter()``, so those the work
    uses (``exporters_used``) are sent to each worker; one that cannot be
    pickled is refused here, before any work starts, rather than failing
    every model in the workers.
    """
    used = set(exporters_used)
    registered = {name: e for name, e in registered_exporters().items() if name in used}
    _check_picklable(registered)
    return concurrent.futures.ProcessPoolExecutor(
        max_workers=jobs,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_start_worker,
        initargs=(registered, notices.shown()),
    )


def _start_worker(registered: dict[str, Exporter], show_notices: bool) -> None:
    """A fresh worker: the parent's registered exporters, and its notices shown as the parent shows them
    (a worker may be the one that compiles RTNeural's runner: that half minute must not be silent)."""
    adopt_registered(registered)
    if show_notices:
        notices.show()


def _check_picklable(registered: dict[str, Exporter]) -> None:
    for name, exporter in registered.items():
        try:
            pickle.dumps(exporter)
        except Exception as exc:  # pickle raises several types (PicklingError, AttributeError, TypeError)
            raise PluginError.at(
                f"exporter {name!r} was added with register_exporter() and cannot be sent to worker processes "
                f"({type(exc).__name__}: {exc})",
                key="jobs",
                expected="an exporter class defined at module level, an entry-point plugin, or jobs=1",
                found=f"{type(exporter).__module__}.{type(exporter).__qualname__}",
            ) from exc
