"""The environment of a child process the AI side starts (the model server, pip).

A child gets what it needs to run and none of the app's configuration. llama.cpp's server
reads its settings from the environment ahead of its arguments (``PORT``, ``HOST``,
``API_KEY``, ``MODEL``, ``N_CTX``, ``CONFIG_FILE``...), so an inherited ``PORT`` made it
collide with the app; and neither it nor a package build has any use for
``DATABASE_URL`` or ``JWT_SECRET``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

# What any program needs: where to find programs and libraries, a home, a locale, a temp
# dir. OPENBLAS_*: set on some processors because older OpenBLAS builds (numpy's) crash
# there without them.
BASE_NAMES = frozenset({
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR",
    "PYTHONPATH", "LD_LIBRARY_PATH", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE",
})
BASE_PREFIXES = ("LC_",)


def child_env(
    environ: Mapping[str, str],
    names: Iterable[str] = (),
    prefixes: tuple[str, ...] = (),
) -> dict[str, str]:
    """``environ`` reduced to the base names plus ``names`` and ``prefixes``."""
    keep = BASE_NAMES | frozenset(names)
    starts = BASE_PREFIXES + prefixes
    env = {key: value for key, value in environ.items() if key in keep or key.startswith(starts)}
    env.setdefault("PATH", os.defpath)
    env.setdefault("LANG", "C.UTF-8")
    return env
