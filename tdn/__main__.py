"""``python -m tdn`` runs the ``tdn`` command line."""

from tdn.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
