"""``python -m prometheus_multiproc``: the ``prometheus-multiproc`` command line
(``scrape``, ``inspect``, ``serve``, ``mark-dead``, ``compact``, ``clear``, ``push``),
with its arguments and exit codes (0 success, 1 failure, 2 usage error)."""

import signal
import sys

from . import _native


def main(argv=None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); return the exit
    status."""
    args = sys.argv[1:] if argv is None else list(argv)
    # `serve` stops on SIGINT or SIGTERM through the core's own handlers; Python's
    # KeyboardInterrupt handler would only fire once the call returns.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    sys.stdout.flush()
    sys.stderr.flush()
    return _native.cli_main(["python -m prometheus_multiproc", *args])


if __name__ == "__main__":
    sys.exit(main())
