"""Transferred codebook priors: corpus -> part-of-speech filter -> language model -> saved prior."""
