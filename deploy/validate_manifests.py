"""Consistency checks of the deployment files against the service's code: the command line.

``deploy/validate.sh`` runs this after ``kustomize build`` and the Kubernetes schema
validation; the tests import it. The checks live in ``deploy/checks/``, one module per
concern (see its ``__init__``). Per rendered overlay:

- every environment variable given to the consumer is a setting of the service
  (``consumer.config.SETTINGS``) or a ``KAFKA_*`` librdkafka property, and the whole
  environment loads (``consumer.config.load``) and is accepted by librdkafka;
- no secret sits in a ConfigMap; the token file is a Secret mounted as a directory (no
  ``subPath``, which would stop rotation); the quota state file is on a writable volume;
- probes on ``/livez`` and ``/readyz``, at the port the service listens on, which the
  Service and the ServiceMonitor use too; the grace period is above the shutdown timeout;
- the pod runs as non-root with a read-only root filesystem and no service links;
- the CRDs (KEDA ScaledObject and TriggerAuthentication, ServiceMonitor) structurally:
  apiVersion, kind, required fields, and what they point at exists;
- KEDA scales on the consumer group the pods use, on the same brokers, with the pods' SASL
  and TLS settings, up to exactly the partition count, and the single-update quota times
  that maximum stays within Target's 1,000,000 a day;
- the NetworkPolicy lets through DNS, the Kafka, Target and Schema Registry ports, and
  Prometheus to the metrics port;
- every ``profile_sync_*`` metric name mentioned exists in ``consumer/metrics.py``, and
  every container's command line parses with the real ``profile-sync`` CLI.

And for ``deploy/compose/docker-compose.yml``: the YAML parses, the required services are
there, every file it mounts or reads exists, the consumer's settings load, the shared alert
rules and dashboard are mounted from ``deploy/prometheus`` and ``deploy/grafana``.

Usage::

    python deploy/validate_manifests.py k8s NAME RENDERED.yaml
    python deploy/validate_manifests.py compose deploy/compose/docker-compose.yml
    python deploy/validate_manifests.py docs docs/deploy.md

Each prints one line per problem and exits 1 if there is any.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(REPO))

from deploy.checks import Problems  # noqa: E402
from deploy.checks.compose import check_compose  # noqa: E402
from deploy.checks.environment import known_env  # noqa: E402
from deploy.checks.keda import PARTITIONS_ANNOTATION  # noqa: E402
from deploy.checks.metrics import check_metric_names  # noqa: E402
from deploy.checks.overlay import check_overlay  # noqa: E402
from deploy.checks.yamldoc import load_docs  # noqa: E402

__all__ = [
    "PARTITIONS_ANNOTATION",
    "Problems",
    "check_compose",
    "check_metric_names",
    "check_overlay",
    "known_env",
    "load_docs",
    "main",
]


def _report(problems: Problems) -> int:
    for line in problems.warnings:
        print(f"warning: {line}", file=sys.stderr)
    for line in problems.items:
        print(line, file=sys.stderr)
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    k8s = sub.add_parser("k8s", help="check one rendered overlay")
    k8s.add_argument("name")
    k8s.add_argument("rendered", type=Path)
    compose = sub.add_parser("compose", help="check a compose file")
    compose.add_argument("path", type=Path)
    docs = sub.add_parser("docs", help="check the metric names a document mentions")
    docs.add_argument("path", type=Path)
    args = parser.parse_args(argv)
    if args.what == "k8s":
        return _report(check_overlay(load_docs(args.rendered.read_text()), args.name))
    if args.what == "compose":
        return _report(check_compose(args.path.resolve()))
    problems = Problems()
    check_metric_names(args.path.read_text(), str(args.path), problems)
    return _report(problems)


if __name__ == "__main__":
    raise SystemExit(main())
