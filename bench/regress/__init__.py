"""Regression checks: the decision rule (rule.py), `bench compare` (compare.py), the interleaved
A/B in a git worktree (worktree.py), and the rule's acceptance experiments (experiments.py)."""
