"""Training: losses, optimisers, the device mesh, checkpoints and the train loop."""
