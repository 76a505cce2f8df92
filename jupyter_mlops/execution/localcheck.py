"""Which imports are the user's own modules: a check run inside kernels and the zygote.

Kept apart from :mod:`.stepexec` so that the zygote (:mod:`.zygote_main`), which runs in the
step's kernel environment, imports nothing but the standard library and this.
"""

from __future__ import annotations

__all__ = ["LOCAL_CHECK"]

#: Python source defining ``_local(top)``, run where modules are imported ahead (a kernel's
#: warm-up, :mod:`.kernelpool`; the zygote, :mod:`.zygote_main`): is a top-level module the
#: user's own, found in the notebook's folder (an earlier step may still be writing it)?
LOCAL_CHECK = '''
import importlib.util, os, sys, sysconfig
def _within(path, folder):
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)
def _local(top):
    if top in sys.modules:
        return False
    spec = importlib.util.find_spec(top)
    if spec is None:
        return True
    places = list(spec.submodule_search_locations or [])
    if spec.origin not in (None, "built-in", "frozen"):
        places.append(spec.origin)
    here = os.path.realpath(os.getcwd())
    roots = [os.path.realpath(p) for k, p in sysconfig.get_paths().items() if "lib" in k]
    return any(_within(os.path.realpath(p), here)
               and not any(_within(os.path.realpath(p), r) for r in roots) for p in places)
'''
