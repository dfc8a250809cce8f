"""target-profile-sync: Kafka profile-change events into Adobe Target's profile APIs."""

from consumer import compiled

__version__ = "0.1.0"

# Before any module of the hot path loads: its compiled build, if current (compiled.py).
compiled.guard()
