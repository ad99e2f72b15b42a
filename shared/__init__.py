"""What tasklight's services agree on: the task, its lifecycle, messages, settings and topology."""
