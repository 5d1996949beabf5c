"""Training one autoencoder: the data sampler, the train step, the loop, checkpoints and the train log.
Knows nothing of scheduling."""
