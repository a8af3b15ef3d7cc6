"""Pydantic models of every Stash kind: the single source of truth for the API and its CRDs.

Not for: behaviour. Controllers, the webhook and the agent import these models and put
their rules in pure functions of their own.
"""

from __future__ import annotations
