"""What the VAE's training CLI and the harness both need, written once below both of them:
device choice and synchronization, argparse types, atomic files and the --out lock, logging.

It imports neither ``vae`` nor ``bench`` (and no torch at the top of a module that a CLI's
``--help`` imports)."""
