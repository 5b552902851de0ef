"""``vaebench run --try``: the usual fixes applied to an unmodified script by patching PyTorch in
its process, measured against it in alternating processes (:mod:`bench.fixes.children`), chosen
from what the baseline built (:mod:`bench.fixes.catalogue`), with their numerics checked
(:mod:`bench.fixes.numerics`). A user adds a fix with :func:`bench.fixes.catalogue.register`."""
