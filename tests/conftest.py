"""Shared pytest set-up: fixtures live in tests/fixtures/, one plugin module per real part."""

pytest_plugins = [
    "tests.fixtures.kafka",
    "tests.fixtures.emulator",
    "tests.fixtures.schema_registry",
]
