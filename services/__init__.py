"""tasklight's services: api, worker and notifier."""
