"""The ``profile-sync`` subcommands of the service: run, check-config, profile."""
