"""Experiments: `compare` puts each contrast between the VAE and diffusion to the test."""
