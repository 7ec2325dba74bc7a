"""Subcommands of the ``tdn`` command line; see :mod:`tdn.cli` for the module contract."""
