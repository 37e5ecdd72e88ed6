"""``python -m mfotel.cli``: the same as the ``mfotel`` command."""

from mfotel.cli import main

main()
