"""Entry point of ``python -m stress``: import the CLI, run it, exit with its status."""

import sys

try:
    from .cli import main
except KeyboardInterrupt:  # Ctrl-C while still importing: nothing to unwind yet
    print("python -m stress: interrupted", file=sys.stderr)
    sys.exit(130)

sys.exit(main())
