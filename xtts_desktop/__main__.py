"""`python -m xtts_desktop`: the same as the `xtts-desktop` command."""

import sys

from xtts_desktop.cli import main

sys.exit(main())
