"""Every module of optim imports first, on its own: a page or a worker may be the first to
import any of them (the Sensitivity page, first after a restart, once failed on a cycle
between optim.sensitivity and the techniques)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

EACH_FIRST = """
import importlib, pkgutil, sys, traceback
import optim
names = sorted(m.name for m in pkgutil.walk_packages(optim.__path__, "optim.")
               if ".migrations." not in m.name + "." and not m.name.endswith("__main__"))
failed = []
for name in names:
    for loaded in [m for m in sys.modules if m == "optim" or m.startswith("optim.")]:
        del sys.modules[loaded]  # third-party libraries stay loaded: only optim's order matters
    try:
        importlib.import_module(name)
    except Exception as e:
        failed.append(f"{name}: {type(e).__name__}: {e}")
print(len(names))
print("\\n".join(failed))
"""


def test_every_optim_module_imports_first_on_its_own():
    out = subprocess.run([sys.executable, "-c", EACH_FIRST], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    count, *failed = out.stdout.strip().splitlines()
    assert int(count) > 50 and not failed, "\n".join(failed)
