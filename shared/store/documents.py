"""The one name for a document as PyMongo reads and writes it, for the store's modules only:
outside `shared/store/` every read is a typed record and every write a `Change`."""

from __future__ import annotations

from typing import Any

#: A MongoDB document, a filter or an update, as PyMongo takes and returns them.
Doc = dict[str, Any]
