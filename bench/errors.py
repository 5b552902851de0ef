"""The one exception every CLI module raises for bad input: printed as one line, exit code 2."""


class UsageError(Exception):
    """Bad command-line input or files; main() prints the message alone and exits 2."""
