"""``python -m consumer.config`` prints the README's configuration table from the catalogue."""

from consumer.config.settings import markdown_table

print(markdown_table(), end="")
