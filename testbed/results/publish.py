"""A run's output folder, published as one unit.

Every file of a run (the report's pages, ``results.json``, ``results.csv``) is written into a
staging folder beside the target (``.reports.staging-PID-XXXX`` next to ``reports``), and the
staging folder then takes the target's place in one step: on Linux an atomic exchange of the
two folders (``renameat2`` with ``RENAME_EXCHANGE``), so that at every moment the target is
either the old run's folder or the new one's, never a mix. Files in the target that a run does
not write (the run history, a ``.gitkeep``) are carried into the staging folder as hard links
first, so they survive the exchange unchanged. Where the exchange is not available the target
is renamed aside and the staging folder renamed in; a kill between the two renames leaves the
old folder aside, and the next run puts it back before anything else.

Publishing holds a lock (``.reports.lock`` beside the target), so two runs into one folder at
once publish one after the other, each whole.

The run's files get the modes the process's umask gives new files (0644 and folders 0755 under
the usual umask 022), as a file made with ``open`` would: the temporary files they are written
through start private (0600), and :meth:`StagedOutput.publish` sets their modes before the
folder is put in place. Carried-over entries keep theirs.

A target that is a mount point (a Docker volume) cannot be renamed. There the staging folder
and the lock are made inside the target, and publishing moves the run's entries in one by one,
each atomically (the ``scenarios`` folder by an exchange), the index last: a kill in between
can leave the new pages beside the old index, and the next run finishes the job.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import secrets
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

__all__ = ["OWNED", "OutputError", "StagedOutput", "new_file_modes", "process_alive",
           "set_new_file_mode"]

OWNED = frozenset({"index.html", "glossary.html", "scenarios", "results.json", "results.csv"})
"""The entries of the output folder a run writes; everything else in it is carried over."""

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


class OutputError(Exception):
    """An output folder or file that cannot be written: one line, naming the path."""


def new_file_modes() -> tuple[int, int]:
    """``(file mode, folder mode)`` that the process's umask gives new files and folders.

    Reads the umask by setting it and putting it back: call it from the main thread, before
    other threads make files.
    """
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask, 0o777 & ~mask


def set_new_file_mode(path: Path) -> None:
    """Give ``path`` (a file written through a private temporary file) the mode a new file
    gets under the umask."""
    os.chmod(path, new_file_modes()[0])


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically; ``False`` where the system cannot (then nothing changed)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                          ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False  # this file system (or kernel) cannot exchange
    raise OSError(code, os.strerror(code), str(b))


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (one of another user's counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class StagedOutput:
    """The staging folder of one run's outputs, and the step that publishes it.

    Use: :meth:`prepare` before any work (it checks that the target can be written and makes
    the staging folder), write every file under :attr:`staging`, then :meth:`publish` inside
    :meth:`lock`; :meth:`discard` on failure.
    """

    def __init__(self, target: Path, owned: frozenset[str] = OWNED) -> None:
        self.target = Path(target)
        self._owned = owned
        absolute = Path(os.path.abspath(self.target))
        self._parent = absolute.parent
        self._name = absolute.name
        self.absolute = absolute
        """The target as an absolute path."""
        self.staging = self._parent / f".{self._name}.staging-{os.getpid()}-{secrets.token_hex(4)}"
        self.published = False
        """Whether the new folder is in place (from then on the run is the published one)."""
        self.in_place = False
        """Whether the target is a mount point, published entry by entry (see the module)."""
        self._lock_path = self._parent / f".{self._name}.lock"
        self._modes = new_file_modes()

    # -- before any work -------------------------------------------------------------------
    def prepare(self) -> None:
        """Check the target and make the staging folder beside it.

        Raises:
            OutputError: the target exists and is not a folder, or its parent cannot hold a
                new folder (missing and not creatable, a file, read-only, full, ``/proc``).
        """
        if not self._name or self.absolute == self.absolute.parent:
            raise OutputError(f"{self.target}: cannot write a run's outputs to the root folder")
        if self.absolute.exists() and not self.absolute.is_dir():
            raise OutputError(f"{self.target}: exists and is not a folder")
        here = Path(os.path.abspath(os.getcwd()))
        if not os.path.ismount(self.absolute) and (here == self.absolute
                                                    or self.absolute in here.parents):
            raise OutputError(f"{self.target}: the output folder is replaced as a whole, so it "
                              "cannot be the current folder or hold it; use a subfolder")
        if self.absolute.is_dir() and os.path.ismount(self.absolute):
            self.in_place = True
            self.staging = self.absolute / f".staging-{os.getpid()}-{secrets.token_hex(4)}"
            self._lock_path = self.absolute / ".lock"
        try:
            self._parent.mkdir(parents=True, exist_ok=True)
            self.staging.mkdir()
            probe = self.staging / ".probe"
            with open(probe, "wb") as handle:
                handle.write(b"\0" * 4096)
                handle.flush()
                os.fsync(handle.fileno())
            probe.unlink()
        except OSError as exc:
            self.discard()
            raise OutputError(f"{self.target}: cannot write here: {_reason(exc)}") from None

    # -- publishing ------------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the target's publishing lock (waits for another run's publish to finish)."""
        try:
            fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise OutputError(f"{self.target}: cannot lock: {_reason(exc)}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._recover()
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def publish(self) -> None:
        """Carry the target's other entries over, then put the staging folder in its place.

        Call inside :meth:`lock`. The run's files get the modes the umask gives new files
        first. The old folder is removed afterwards.

        Raises:
            OutputError: carrying over or renaming failed; the target is unchanged.
        """
        try:
            self._set_modes()
            if self.in_place:
                self._move_in()
            elif self.absolute.is_dir():
                self._carry_over()
                if _exchange(self.staging, self.absolute):
                    self.published = True
                    shutil.rmtree(self.staging, ignore_errors=True)
                    return
                aside = self._parent / f".{self._name}.old-{os.getpid()}-{secrets.token_hex(4)}"
                os.rename(self.absolute, aside)
                try:
                    os.rename(self.staging, self.absolute)
                except OSError:
                    os.rename(aside, self.absolute)
                    raise
                self.published = True
                shutil.rmtree(aside, ignore_errors=True)
            else:
                os.rename(self.staging, self.absolute)
                self.published = True
        except OSError as exc:
            raise OutputError(f"{self.target}: cannot publish the run: {_reason(exc)}") from None

    def discard(self) -> None:
        """Remove the staging folder (after a failure or an interruption)."""
        shutil.rmtree(self.staging, ignore_errors=True)

    # -- helpers ---------------------------------------------------------------------------
    def _set_modes(self) -> None:
        """The run's entries in the staging folder, with the modes of new files and folders."""
        file_mode, folder_mode = self._modes
        for name in self._owned:
            top = self.staging / name
            if top.is_symlink() or not top.exists():
                continue
            if not top.is_dir():
                os.chmod(top, file_mode)
                continue
            os.chmod(top, folder_mode)
            for root, folders, files in os.walk(top):
                for folder in folders:
                    os.chmod(os.path.join(root, folder), folder_mode)
                for file in files:
                    os.chmod(os.path.join(root, file), file_mode)

    def _move_in(self) -> None:
        """Publish into a mount point: entry by entry, each atomic, the index last."""
        for name in (*sorted(self._owned - {"index.html"}), "index.html"):
            src, dst = self.staging / name, self.absolute / name
            if not src.exists():
                continue
            if src.is_dir() and dst.is_dir() and not dst.is_symlink():
                if not _exchange(src, dst):
                    aside = self.staging / f".old-{name}"
                    os.rename(dst, aside)
                    os.rename(src, dst)
            else:
                if dst.is_dir() and not dst.is_symlink():
                    shutil.rmtree(dst)
                os.replace(src, dst)
        self.published = True
        shutil.rmtree(self.staging, ignore_errors=True)

    def _carry_over(self) -> None:
        for entry in os.scandir(self.absolute):
            if entry.name in self._owned:
                continue
            dest = self.staging / entry.name
            if entry.is_symlink():
                os.symlink(os.readlink(entry.path), dest)
            elif entry.is_dir():
                shutil.copytree(entry.path, dest, symlinks=True, copy_function=os.link)
            else:
                os.link(entry.path, dest)

    def _recover(self) -> None:
        """Undo what a run killed while publishing left: put an old folder back where the
        target is missing, remove staging folders of runs that are gone."""
        if self.in_place:
            prefix_old, prefix_stage, folder = "\0", ".staging-", self.absolute
        else:
            prefix_old, prefix_stage = f".{self._name}.old-", f".{self._name}.staging-"
            folder = self._parent
        try:
            entries = list(os.scandir(folder))
        except OSError:
            return
        for entry in entries:
            if entry.name.startswith(prefix_old):
                if not self.absolute.exists():
                    os.rename(entry.path, self.absolute)
                else:
                    shutil.rmtree(entry.path, ignore_errors=True)
            elif entry.name.startswith(prefix_stage) and entry.path != str(self.staging):
                pid = entry.name[len(prefix_stage):].split("-", 1)[0]
                if pid.isdigit() and not process_alive(int(pid)):
                    shutil.rmtree(entry.path, ignore_errors=True)
