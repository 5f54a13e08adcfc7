"""Self-supervised methods of the course; each maps a batch of clips to a loss (see `base.Method`)."""
