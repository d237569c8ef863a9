"""``python -m flowops`` runs the same CLI as the ``flowops`` entry point."""

from flowops.cli import main

if __name__ == "__main__":
    main()
