"""API keys: Bearer tokens checked against SHA-256 digests in constant time.

Keys come from an environment variable (comma-separated plain keys, hashed on read and never kept)
or from a file of SHA-256 hex digests, one per line (``#`` starts a comment), so the file on disk
cannot be replayed as a credential. A presented token is hashed and compared with every stored
digest by ``hmac.compare_digest``, without stopping at the first match, so neither the comparison
nor the number of keys leaks through timing.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from dataclasses import dataclass
from pathlib import Path

from tuneproof.serve.settings import ServeConfigError

_HEX = re.compile(r"^[0-9a-f]{64}$")


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ApiKeys:
    digests: tuple[bytes, ...]

    @classmethod
    def load(cls, env_var: str | None = None, key_file: Path | None = None) -> ApiKeys:
        digests: list[bytes] = []
        if env_var is not None:
            raw = os.environ.get(env_var, "")
            keys = [k.strip() for k in raw.split(",") if k.strip()]
            if not keys:
                raise ServeConfigError(f"environment variable {env_var} holds no API key")
            digests += [key_digest(k).encode() for k in keys]
        if key_file is not None:
            try:
                lines = key_file.read_text(encoding="utf-8").splitlines()
            except OSError as exc:
                raise ServeConfigError(f"cannot read the key file {key_file}: {exc.strerror}") from None
            from_file: list[bytes] = []
            for lineno, line in enumerate(lines, start=1):
                value = line.split("#", 1)[0].strip().lower()
                if not value:
                    continue
                if not _HEX.match(value):
                    raise ServeConfigError(
                        f"{key_file}:{lineno}: expected a SHA-256 hex digest (64 hex digits) of a key"
                    )
                from_file.append(value.encode())
            if not from_file:
                raise ServeConfigError(f"{key_file} holds no key digest")
            digests += from_file
        return cls(tuple(digests))

    def __bool__(self) -> bool:
        return bool(self.digests)

    def check(self, authorization: str | None) -> bool:
        """Whether an ``Authorization`` header value is ``Bearer <a known key>``."""
        if not authorization:
            return False
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return False
        presented = key_digest(token).encode()
        ok = False
        for d in self.digests:
            ok |= hmac.compare_digest(presented, d)
        return ok
