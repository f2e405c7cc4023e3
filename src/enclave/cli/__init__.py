"""Command-line entry points. Commands parse arguments and hand off; no logic here."""
