"""``python -m vae``: see ``vae.cli``."""

from vae.cli import main

raise SystemExit(main())
