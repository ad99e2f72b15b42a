"""The worker: runs task handlers and records every change of their tasks."""
