"""The bearer-token rule: when a token is configured, every Target API call must carry it.

The token file is re-read whenever its modification time, size or inode changes, so a test
(or an operator) can rotate the token while the emulator runs; the old token stops working
at once, as when a token is regenerated in the Target UI. A token file that is missing or
empty refuses every request. The token is never logged or echoed.
"""

from __future__ import annotations

import hmac
import os


class TokenCheck:
    def __init__(self, token: str | None, token_file: str | None) -> None:
        self._static = token
        self._path = token_file
        self._stamp: tuple[int, int, int] | None = None
        self._from_file: bytes | None = None

    @property
    def required(self) -> bool:
        return self._static is not None or self._path is not None

    def allows(self, authorization: str | None) -> bool:
        """Whether an ``Authorization`` header value carries the current token."""
        if not self.required:
            return True
        expected = self._current()
        if not expected or not authorization:
            return False
        scheme, _, presented = authorization.partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(presented.strip().encode("utf-8"), expected)

    def _current(self) -> bytes | None:
        if self._static is not None:
            return self._static.encode("utf-8")
        assert self._path is not None
        try:
            st = os.stat(self._path)
        except OSError:
            self._stamp, self._from_file = None, None
            return None
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if stamp != self._stamp:
            try:
                with open(self._path, "rb") as fh:
                    self._from_file = fh.read().strip() or None
            except OSError:
                self._from_file = None
            self._stamp = stamp
        return self._from_file
