"""Named crash points for the fault harness (``suretynet faults``); off unless configured.

Every step a node takes is an RPC it serves or a round of one of its resumers, and every
step changes the node's database in one or more transactions. The crash points are named
after them, so they cover every step of every flow on every node without a list to keep:

- ``<step>#<n>:before_commit``: the n-th transaction of the step did its work and has not
  committed; a crash here loses it;
- ``<step>#<n>:after_commit``: it committed, and the step has not gone on;
- ``<step>:after_answer``: the RPC's answer was sent (served steps only).

``<step>`` is the RPC's short name (``BillingService/SearchBillingAgencyIdentification``) or
``resume:<resumer name>``. A node reads a control file only when the environment variable
``FAILPOINT_CONTROL_DIR`` names a directory (its file is ``<dir>/<entity_id>``), so
production nodes pay nothing. The file holds one line: ``record`` (append every point
passed to ``<file>.points``), a point name (exit at once, with status 86, the first time
the node reaches it), or nothing.
"""

from __future__ import annotations

import contextvars
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

CONTROL_DIR_ENV = "FAILPOINT_CONTROL_DIR"
# The exit status of a node that crashed at its armed point, so that a harness tells it
# from any other death.
CRASH_EXIT_STATUS = 86
RECORD = "record"


@dataclass
class _Step:
    name: str
    transactions: int = 0


_step: contextvars.ContextVar[_Step | None] = contextvars.ContextVar("failpoint_step", default=None)


@dataclass
class _Control:
    path: Path | None
    version: tuple[int, int, int] = (-1, -1, -1)
    armed: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def current(self) -> str:
        assert self.path is not None
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return ""
        version = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        if version != self.version:
            with self.lock:
                self.armed = self.path.read_text().strip()
                self.version = version
        return self.armed


_control = _Control(None)


def configure(entity_id: str) -> None:
    """Points this process at its control file, if the environment asks for failpoints."""
    directory = os.environ.get(CONTROL_DIR_ENV)
    _control.path = Path(directory) / entity_id if directory else None


def write_control(path: Path, content: str) -> None:
    """Replaces a control file atomically (a new inode, so a reader never misses it)."""
    staged = path.with_name(path.name + ".new")
    staged.write_text(content)
    os.replace(staged, path)


def enabled() -> bool:
    return _control.path is not None


def begin(step: str) -> None:
    """Names the step the current task runs (an RPC, a resumer round's flow)."""
    if enabled():
        _step.set(_Step(step))


def reach(point: str) -> None:
    """Passes a crash point: records it, or exits the process if it is the armed one."""
    if not enabled():
        return
    armed = _control.current()
    if not armed:
        return
    if armed == RECORD:
        assert _control.path is not None
        with _control.lock, open(f"{_control.path}.points", "a", encoding="utf-8") as points:
            points.write(point + "\n")
        return
    if armed == point:
        log.critical("failpoint %s reached: exiting with status %d", point, CRASH_EXIT_STATUS)
        logging.shutdown()
        # Disarmed first: the restarted node must get past the point and finish the flow.
        assert _control.path is not None
        write_control(_control.path, "")
        os._exit(CRASH_EXIT_STATUS)


def transaction_points() -> tuple[str, str] | None:
    """The before- and after-commit points of the transaction about to run, if in a step."""
    step = _step.get() if enabled() else None
    if step is None:
        return None
    step.transactions += 1
    prefix = f"{step.name}#{step.transactions}"
    return f"{prefix}:before_commit", f"{prefix}:after_commit"


def after_answer(step: str) -> Callable[[object], None] | None:
    """A callback for the RPC's completion that passes ``<step>:after_answer``."""
    if not enabled():
        return None
    return lambda _context: reach(f"{step}:after_answer")
