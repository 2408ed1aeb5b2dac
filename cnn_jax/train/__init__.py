"""Training: config schema, optimizers, train state, pure steps, logging and the loop."""
