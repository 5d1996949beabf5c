"""vqbench: config, trainer, evaluator, metrics, records and tables for comparing VQ quantizers."""
