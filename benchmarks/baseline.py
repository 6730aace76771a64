"""Load another commit's swinlab beside today's, for same-process A/B benchmarks.

``load_baseline("056c22d")`` checks the commit out into a git worktree
(``benchmarks/.baseline-<ref>``, ignored by git) and imports its
``src/swinlab`` under the package name ``swinlab_base`` (its modules import
each other relatively, so the two copies do not mix). Timing both in one
process, in alternating repeats, makes the ratio immune to the machine's
speed drifting between runs.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]

#: the commit the open issues started from.
BASE_COMMIT = "056c22d"


def baseline_src(ref: str = BASE_COMMIT) -> Path:
    """``src/swinlab`` of ``ref`` in a worktree (created on first use)."""
    tree = REPO / "benchmarks" / f".baseline-{ref}"
    if not (tree / "src" / "swinlab").is_dir():
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "-f", str(tree), ref], check=True,
                       capture_output=True)
    return tree / "src" / "swinlab"


def load_baseline(ref: str = BASE_COMMIT, name: str = "swinlab_base") -> ModuleType:
    """Import ``ref``'s swinlab as the package ``name`` (and its ``models`` subpackage)."""
    if name in sys.modules:
        return sys.modules[name]
    src = baseline_src(ref)
    spec = importlib.util.spec_from_file_location(name, src / "__init__.py", submodule_search_locations=[str(src)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    importlib.import_module(f"{name}.models")
    return module
