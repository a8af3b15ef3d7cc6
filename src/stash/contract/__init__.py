"""The contract between the operator and the agent: rules both sides must read alike.

What it is for: session phases and conditions (`phases`), session names, labels and
history rules (`sessions`), the names injection writes into workloads (`names`), the
workload kinds and the one "sidecar or Job?" predicate (`workloads`), the GVRs of our own
kinds derived from `stash.api.KINDS` (`resources`), the Job steps' flag table (`steps`)
and the agent's ClusterRoles as data (`rbac`).

Layering: this package sits below `controllers/`, `agent/`, `webhook/`, `inject/` and
`validation/`, and above `api/` and `kube/`. It does no I/O and imports neither side.
"""
