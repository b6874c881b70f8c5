"""Find things shaped like Conclave secrets in text (logs, files, output)."""

from __future__ import annotations

import re

# Invite secrets and resume-token secrets are 32 random bytes as unpadded URL-safe base64.
SECRET_SHAPE = re.compile(r"(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{43}(?![A-Za-z0-9_-])")


def secret_shaped(text: str) -> list[str]:
    """Tokens of exactly a secret's length that mix upper case, lower case and digits."""
    return [
        t
        for t in SECRET_SHAPE.findall(text)
        if re.search(r"[A-Z]", t) and re.search(r"[a-z]", t) and re.search(r"[0-9]", t)
    ]
