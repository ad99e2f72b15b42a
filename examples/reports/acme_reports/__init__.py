"""ACME's reports, rendered in the background by tasklight workers (an example task package)."""
