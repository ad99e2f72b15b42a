"""The webhook sender: records each task event its owners' endpoints want, then sends it."""
