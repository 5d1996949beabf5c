"""Evaluation of a trained autoencoder on a held-out split: the evaluator and the metric registry
(metrics/). Knows nothing of scheduling."""
