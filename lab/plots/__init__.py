"""Plots: pure functions from records/summaries to matplotlib Figures (explicit Figure/Axes API)."""
