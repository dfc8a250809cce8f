"""target-profile-sync: Kafka profile-change events into Adobe Target's profile APIs."""

__version__ = "0.1.0"
