"""What runs in pods: the backup sidecar, the restore init-container, the job steps.

What it is for: the `stash` commands a workload's injected containers and the
operator's Jobs run (`stash.cli.agent`): `run-backup` (`sidecar`), `restore`
(`restore`), and the job-model steps `backup-pvc`, `update-status`, `restore-pvc`
(`steps`, which also holds the step contract). They share:

* `identity` — host names (`host-0`, `host-<ordinal>`, node name, alias) and Lease names;
* `context`, `repository` — the pod, the invoker, the Repository and its Secret -> restic;
* `stats` — pure rules: does this host have work in a session, is it the last one,
  what its stats entry says; status changes as functions of the live object;
* `hostbackup`, `executor`, `postbackup` — one host's backup from heartbeat to stats,
  and the post-backup actions of the host that completes a session;
* `leases`, `lockpolicy` — heartbeats, taking turns, and which restic locks are stale;
* the host and repository metrics they push are built and sent by
  `stash.sessionmetrics` (shared with the operator); the ClusterRoles the pods need are
  in `stash.contract.rbac`.

Contracts other components rely on:

* Host stats are upserted by hostname with `stash.kube.status.update_status`; another
  host's entry is never touched. The host that completes a session runs the
  post-backup actions *before* writing its own entry, so the operator sees the
  `RetentionPolicyApplied` / `RepositoryIntegrityVerified` / `RepositoryMetricsPushed`
  conditions no later than the entry that makes the session complete.
* While a host is backed up its executor renews the heartbeat Lease
  `stash-hb-<session>-<hostname>` (labels `stash.appscode.com/backup-session`,
  `stash.appscode.com/hostname`; holder = pod name) every 5 s, and deletes it after
  writing the host's entry (`leases`).

Not for: anything the operator decides (phases, deadlines, Jobs, injection).
"""
