"""The grids expanded into runs (each run's identity: RunSpec, training hash), the run folder's
record and checks, the queue's progress, and what the workflow makes again."""
