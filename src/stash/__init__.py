"""stash: an open, Python implementation of the Stash backup operator for Kubernetes."""

__version__ = "0.1.0"
