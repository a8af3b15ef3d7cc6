"""Kubernetes plumbing with no business rules: client (server-side apply included),
line reader for streams, informer, work queue, controller runner, leader election,
status patches, conditions and events.

Everything here works on raw JSON dicts (large lists and caches stay cheap); callers parse
our own kinds into the pydantic models of `stash.api`.
"""
