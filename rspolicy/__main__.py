"""``python -m rspolicy``: the same as the ``rspolicy`` command."""

from rspolicy.cli import main

main()
