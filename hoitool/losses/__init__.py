"""Losses as plain batched functions, one concept per file."""
