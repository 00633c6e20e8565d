"""Scenarios (drills): a topology plus what to run on it, in fixed phases (`runner`)."""
