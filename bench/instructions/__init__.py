"""Exact counts of CPU instructions under Valgrind's callgrind: counting them (``count.py``, whose
child process is ``child.py``), the exact rule that compares two counts (``compare.py``), and
counting a base commit and the work tree side by side (``sides.py``, for ``regress``)."""
