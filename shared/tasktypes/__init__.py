"""Task types that ship with tasklight."""
