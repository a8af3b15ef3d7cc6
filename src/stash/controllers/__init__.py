"""One reconciler per kind (repository, backupconfiguration, backupsession,
restoresession, ...), plus the pure rules they apply (`phases`, `sessions`)."""
