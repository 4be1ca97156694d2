"""G-HOP's interaction prior: data, the diffusion model over interaction grids, sampling."""
