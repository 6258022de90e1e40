"""Imported by the forkserver only (:data:`optim.pool.PRELOAD`): it dies with its driver."""

from optim.pool import die_with_parent

die_with_parent()
