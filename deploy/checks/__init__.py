"""Consistency checks of the deployment files against the service's code, by concern.

- ``yamldoc``: reading rendered manifests (find a kind, walk a path, match a selector);
- ``environment``: the consumer's environment is made of settings of the service
  (``consumer.config.SETTINGS``) and ``KAFKA_*`` properties, loads, and librdkafka takes it;
- ``metrics``: every ``profile_sync_*`` name mentioned is exported by consumer/metrics.py;
- ``commands``: container command lines parse with the real ``profile-sync`` CLI;
- ``crds``: KEDA ScaledObject/TriggerAuthentication and ServiceMonitor, structurally;
- ``pod``: files, port, probes, shutdown, memory, security, Service and PDB of the pods;
- ``keda``: autoscaling on the pods' group, brokers, auth, partitions and quota;
- ``network``: the NetworkPolicy lets through what the settings need;
- ``alerts``: alert rules, scrape job and dashboards agree where they are wired together;
- ``overlay``: every check of one rendered Kubernetes overlay;
- ``compose``: the compose file.

deploy/validate_manifests.py is the command line over them.
"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


class Problems:
    """Collects problems with a prefix naming where they were found."""

    def __init__(self) -> None:
        self.items: list[str] = []
        self.warnings: list[str] = []

    def add(self, where: str, what: str) -> None:
        self.items.append(f"{where}: {what}")

    def warn(self, where: str, what: str) -> None:
        self.warnings.append(f"{where}: {what}")

    def __bool__(self) -> bool:
        return bool(self.items)
