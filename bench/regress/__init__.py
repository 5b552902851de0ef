"""Regression checks by the rule of bench/measure/rule.py: `bench compare` (compare.py), the
interleaved A/B in a git worktree (worktree.py), and the rule's acceptance experiments (experiments.py)."""
