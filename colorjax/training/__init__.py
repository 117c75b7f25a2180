"""Training a run in a workdir: the loop, resuming (config reconciliation, state restore),
validation, checkpoints and when to save them, the workdir lock, progress and scalars, device
meshes and multi-host data parallelism, and memory handed back after compilations."""
