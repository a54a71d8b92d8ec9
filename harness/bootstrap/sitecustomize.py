"""stack-harness bootstrap: record a stack's provider traffic with no change to its code.

The harness puts this file's directory on the ``PYTHONPATH`` of a stack it starts with
``--stack-command`` in record, replay or record-if-missing mode, so Python imports it at
start-up. It first runs the ``sitecustomize`` the environment already had, if any, then puts
the harness's own code (and the few pure-Python packages it needs, as a fallback) at the end
of ``sys.path`` and calls ``harness.recording.patch.install_from_env``. Everything it patches
is listed in that module. It never raises: a failure is reported to the harness, which fails
the session with the reason.
"""

import importlib.machinery
import importlib.util
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))


def _chain_existing_sitecustomize() -> None:
    """Run the sitecustomize this one shadows (the next one on the path), as Python would."""
    others = [p for p in sys.path if os.path.abspath(p or os.getcwd()) != _HERE]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", others)
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)


_installation = None  # the process's patches (harness.recording.patch.Installation)


def _attach() -> None:
    global _installation
    vendor = os.path.join(_HERE, "vendor")
    if vendor not in sys.path:
        sys.path.append(vendor)
    from harness.recording.patch import install_from_env

    _installation = install_from_env()


def _report_failure(exc: BaseException) -> None:
    path = os.environ.get("HARNESS_BOOTSTRAP_REPORT")  # patch.REPORT_ENV: harness may not import
    if path:
        try:
            with open(path, "a", encoding="utf-8") as handle:
                handle.write(f"failed pid={os.getpid()}: {type(exc).__name__}: {exc}\n")
        except OSError:
            pass


try:
    _chain_existing_sitecustomize()
finally:
    try:
        _attach()
    except Exception as exc:  # the stack must still start; the harness reports the reason
        _report_failure(exc)
