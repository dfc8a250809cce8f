"""A small client for the emulator's ``/_emulator/`` test controls, for tests and scripts.

control = EmulatorControl("http://127.0.0.1:8080")
control.inject({"api": "bulk", "status": 503, "retry_after": 1, "count": 2})
...
control.wait_until(lambda: control.stats()["batches"]["complete"] >= 3, timeout=10)
assert control.profiles()["thirdPartyId"]["crm-1"] == {"tier": "gold"}
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import httpx

T = TypeVar("T")
_POLL_SECONDS = 0.02  # between two checks of wait_until's predicate


class EmulatorControl:
    def __init__(
        self,
        base_url: str,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        """``transport`` lets unit tests drive an in-process app (``httpx.WSGITransport``)."""
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.base_url + "/_emulator", timeout=timeout, transport=transport
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> EmulatorControl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _get(self, path: str, **params: Any) -> Any:
        response = self._http.get(path, params={k: v for k, v in params.items() if v is not None})
        response.raise_for_status()
        return response.json()

    def _post(self, path: str, payload: Any = None) -> Any:
        response = self._http.post(path, json=payload)
        response.raise_for_status()
        return response.json()

    def stats(self) -> dict[str, Any]:
        """Counters: requests per API, batches by status, rows, single updates, rejections."""
        result: dict[str, Any] = self._get("/stats")
        return result

    def bulk_rate(self) -> dict[str, Any]:
        """The bulk-API call counters: ``limit``, ``calls_counted``, ``refused_503``,
        ``calls_in_window``, ``peak_calls_in_window`` (kept with the limit off too)."""
        result: dict[str, Any] = self.stats()["bulk_rate"]
        return result

    def lost(self) -> list[dict[str, Any]]:
        """Rows lost to ``bulk_loss_rate``: ``{"batchId", "idType", "row", "id", "attributes"}``."""
        result: list[dict[str, Any]] = self._get("/lost")["lost"]
        return result

    def profiles(self, details: bool = False, prefix: str = "") -> dict[str, dict[str, Any]]:
        """``{"thirdPartyId": {id: {attr: value}}, "pcId": {...}}``; with ``details``,
        each attribute is ``{"value", "modifiedAt", "appliedAt", "source"}``; with
        ``prefix``, only the profiles whose id starts with it."""
        result: dict[str, dict[str, Any]] = self._get(
            "/profiles", details="true" if details else None, prefix=prefix or None
        )
        return result

    def state(self) -> dict[tuple[str, str], dict[str, str]]:
        """Every stored profile as ``{(id type, id): {attr: value}}``, to compare with a fold."""
        return {
            (id_type, pid): attrs
            for id_type, table in self.profiles().items()
            for pid, attrs in table.items()
        }

    def requests(self, api: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        """Recent Target API requests, oldest first (optionally one API class, the last N)."""
        result: list[dict[str, Any]] = self._get("/requests", api=api, limit=limit)["requests"]
        return result

    def inject(self, fault_plan: Any) -> list[dict[str, Any]]:
        """Add fault rules (a rule, a list, or ``{"faults": [...], "replace": true}``)."""
        result: list[dict[str, Any]] = self._post("/faults", fault_plan)["faults"]
        return result

    def faults(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._get("/faults")["faults"]
        return result

    def clear_faults(self) -> None:
        self._http.delete("/faults").raise_for_status()

    def reset(self) -> None:
        self._post("/reset")

    def tick(self) -> int:
        """Apply what is due now; returns how many batches and single updates were applied."""
        return int(self._post("/tick")["applied"])

    def batches(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._get("/batches")["batches"]
        return result

    def batch(self, batch_id: str) -> dict[str, Any]:
        """One accepted batch with its decoded rows (``rows`` is None once not retained)."""
        result: dict[str, Any] = self._get(f"/batches/{batch_id}")
        return result

    def wait_until(
        self, predicate: Callable[[], T], timeout: float, interval: float = _POLL_SECONDS
    ) -> T:
        """Call ``predicate`` until it returns something truthy, and return that.

        Raises ``TimeoutError`` (with the last value) when ``timeout`` seconds pass first.
        """
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() >= deadline:
                raise TimeoutError(f"condition not met within {timeout}s (last: {value!r})")
            time.sleep(interval)
