"""Vectors shared by knowledge bases and memory: the embedders and the in-process index."""
