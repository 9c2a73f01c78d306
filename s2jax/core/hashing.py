"""The one short hash of a JSON-able value: run fingerprints, stage keys, provenance.

Stage keys and run fingerprints are compared against what a killed run stored, so this
encoding (sorted keys, json's default separators, `str` for what JSON cannot hold) must not
change, or every stored run would stop resuming.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def json_hash(value: Any) -> str:
    """16 hex digits of the SHA-256 of `value` as JSON; key order does not matter."""
    blob = json.dumps(value, sort_keys=True, default=str).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:16]
