"""`python -m stash.cli.kubectl`: the same as the `kubectl-stash` command."""

from __future__ import annotations

import sys

from stash.cli.kubectl.app import main

sys.exit(main())
