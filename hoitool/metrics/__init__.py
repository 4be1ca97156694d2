"""Metrics: grasp quality, reconstruction, hands, generative models."""
