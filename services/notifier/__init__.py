"""The notifier: follows MongoDB's change stream of tasks and pushes each change to WebSocket
subscribers (docs/protocol.md)."""
