"""Conclave: end-to-end-encrypted video meetings provisioned from chat."""

from __future__ import annotations

__version__ = "0.1.0"
