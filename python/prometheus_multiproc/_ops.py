"""Directory upkeep: compaction and clearing, by the core crate's rules."""

from typing import Dict, List, Optional

from . import _native
from ._dir import PathLike, resolve_dir


def compact(path: Optional[PathLike] = None) -> Dict[str, list]:
    """Fold the files of dead writers of this crate into archives, keeping every total.

    Only writers that hold a liveness lock while alive (the Rust crate's writers) are
    ever folded; prometheus_client's files are never touched (it takes no lock, so its
    writers' liveness is unknown). Returns what was done: ``dead_writers``,
    ``archives``, ``removed``, ``kept``, ``unreadable`` (``(file, problem)`` pairs) and
    ``deferred``, each a list.

    :raises ValueError: no directory (see :func:`resolve_dir`).
    :raises OSError: when the compaction fails.
    """
    return _native.compact(resolve_dir(path))


def clear(path: Optional[PathLike] = None) -> Dict[str, List[str]]:
    """Remove a previous run's metrics files (this crate's and prometheus_client's,
    nothing else) before any worker starts, as ``prometheus-multiproc clear`` does.

    Refused while a writer of this crate is alive or a compaction runs. Returns
    ``{"removed": [...], "left": [...]}`` (``left``: names that are not regular files).

    :raises ValueError: no directory (see :func:`resolve_dir`), or clearing refused.
    :raises OSError: when a file cannot be removed.
    """
    return _native.clear(resolve_dir(path))
