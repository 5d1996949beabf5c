"""The networks every method shares: the VQ autoencoder, the PatchGAN discriminator and the
perceptual network of the training loss."""
