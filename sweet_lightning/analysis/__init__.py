"""Analyses run on trained (or briefly fine-tuned) adaptive-inference models."""
