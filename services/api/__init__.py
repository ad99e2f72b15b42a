"""The REST API: submit and read tasks, and serve the web UI."""
