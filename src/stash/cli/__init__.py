"""Command-line entry points: `stash` (operator, webhook, agent, crds, dev) and `kubectl-stash`."""
