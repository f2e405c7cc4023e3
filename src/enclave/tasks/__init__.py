"""Agent tasks: definitions, runs, schedules, steps and tools as plugins, progress events.

See docs/tasks.md. :mod:`.context` is what a step sees of its run; :mod:`.registry` finds
step kinds and tools (built in, or from other packages' entry points).
"""
