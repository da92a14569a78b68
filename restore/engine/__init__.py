"""Inference engine: stateless runners over models that carry their own metadata."""
