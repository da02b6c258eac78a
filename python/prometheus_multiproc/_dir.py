"""Where the metrics directory is: an explicit path, or the environment, as
prometheus_client's ``MultiProcessCollector`` finds it."""

import os
import warnings
from typing import Optional, Union

_ENV = "PROMETHEUS_MULTIPROC_DIR"
_ENV_DEPRECATED = "prometheus_multiproc_dir"

PathLike = Union[str, "os.PathLike[str]"]


def resolve_dir(path: Optional[PathLike] = None) -> str:
    """Return the metrics directory: ``path``, or else ``$PROMETHEUS_MULTIPROC_DIR``.

    Exactly prometheus_client 0.26's ``MultiProcessCollector`` rules: when ``path`` is
    ``None`` and only the deprecated lower-case ``prometheus_multiproc_dir`` is set, it
    is copied to ``PROMETHEUS_MULTIPROC_DIR`` and a ``DeprecationWarning`` is issued.

    :raises ValueError: ``env PROMETHEUS_MULTIPROC_DIR is not set or not a
        directory``, when no directory is given or it is not a directory.
    """
    if path is None:
        if _ENV_DEPRECATED in os.environ and _ENV not in os.environ:
            os.environ[_ENV] = os.environ[_ENV_DEPRECATED]
            warnings.warn(
                "prometheus_multiproc_dir variable has been deprecated in favor of the upper case naming "
                "PROMETHEUS_MULTIPROC_DIR",
                DeprecationWarning,
                stacklevel=3,
            )
        path = os.environ.get(_ENV)
    if not path or not os.path.isdir(path):
        raise ValueError("env PROMETHEUS_MULTIPROC_DIR is not set or not a directory")
    return os.fspath(path)
