"""Neural networks: the 3D VQ-VAE, the 3D UNet denoiser, the text encoder."""
