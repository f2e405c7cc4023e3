"""Assistants: virtual models, profiles, prompt assembly and conversations."""
