"""Metrics for generated images."""
