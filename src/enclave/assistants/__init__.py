"""Assistants: virtual models, conversations, memory tiers, knowledge bases (RAG)."""
