"""The training core shared by every method: clip sampling, the loop, checkpoints."""
