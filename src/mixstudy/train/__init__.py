"""Training and evaluating runs: the training step, the loop over runs and packs, evaluation
during and after training, checkpoints, and writing a run's folder."""
