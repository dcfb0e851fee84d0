"""``python -m deepsaliency.params``: print the README's Parameters table (generated from the models)."""

from .docs import table

print(table(), end="")
