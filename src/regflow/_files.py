r"""Files that are either complete or absent: exclusive, atomic, fsynced writes and checksums.

`write_file` writes into a temporary beside the target, fsyncs it, then publishes it in one
step: ``os.link`` (fails if the target exists, so of two concurrent writers exactly one
wins) or, with ``overwrite=True``, ``os.replace``.  The temporary is removed on every exit
path that runs Python code; one left by a killed process is named
``.<name>.tmp-<host>-<pid>-<random>`` (a dotfile that no reader mistakes for data) and is
removed by the next write to the same directory once that process is gone.

Used by `Trajectory.save` and by the ``out`` directory of `sweep` (chunks, their
checksums, the manifest and the result).
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import socket
import uuid

#: Marker between the target's name and the writer's identity in a temporary's name.
TMP_MARK = ".tmp-"
#: Characters of the target's name kept in a temporary's name (file names stop at 255 bytes).
TMP_NAME_CHARS = 120
#: Bytes read at a time when hashing a file.
HASH_BLOCK = 1 << 20
#: ``os.link`` errors meaning "this file system has no hard links": fall back to O_EXCL.
_NO_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.EMLINK, errno.ENOSYS}
_TMP_RE = re.compile(r"^\.(?P<name>.*)\.tmp-(?P<host>[0-9a-f]{8})-(?P<pid>\d+)-[0-9a-f]{8}$", re.DOTALL)


def _host() -> str:
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def temporary_path(path: str) -> str:
    """A fresh temporary name for ``path``, in its directory."""
    directory, name = os.path.split(path)
    return os.path.join(directory, f".{name[:TMP_NAME_CHARS]}{TMP_MARK}{_host()}-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def is_temporary(name: str) -> bool:
    """Whether a file name is one of `temporary_path`'s."""
    return _TMP_RE.match(name) is not None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    try:  # a killed process not yet reaped by its parent is a zombie: gone for our purposes
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def remove_stale_temporaries(directory: str, name: str | None = None) -> list[str]:
    """Remove the temporaries in ``directory`` (those for ``name`` only, if given) left by
    processes of this host that no longer run; returns their paths."""
    if os.name != "posix":
        return []
    try:
        entries = os.listdir(directory or ".")
    except OSError:
        return []
    host, removed = _host(), []
    for entry in entries:
        match = _TMP_RE.match(entry)
        if match is None or match["host"] != host or (name is not None and match["name"] != name[:TMP_NAME_CHARS]):
            continue
        pid = int(match["pid"])
        if pid == os.getpid() or _alive(pid):
            continue
        stale = os.path.join(directory, entry)
        try:
            os.unlink(stale)
            removed.append(stale)
        except OSError:
            pass
    return removed


def sha256_file(path: str) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def _fsync_directory(directory: str):
    try:
        fd = os.open(directory or ".", os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems cannot fsync a directory
        pass
    finally:
        os.close(fd)


def os_error(cls, code, message):
    """``cls(message)`` (an `OSError` subclass) with ``errno`` set: a plain message, no ``[Errno n]``."""
    err = cls(message)
    err.errno = code
    return err


def _unlink_quietly(path: str):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def check_target(path: str, *, overwrite: bool, hint: str = "pass overwrite=True to replace it"):
    """Raise unless ``path`` can be written: its directory exists, it is not a directory, and
    it does not exist unless ``overwrite``."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise os_error(FileNotFoundError, errno.ENOENT, f"cannot write {path}: the directory {directory} does not "
                       f"exist; create it first (e.g. os.makedirs({directory!r}))")
    if os.path.isdir(path):
        raise os_error(IsADirectoryError, errno.EISDIR, f"cannot write {path}: it is a directory; give a file name")
    if not overwrite and os.path.lexists(path):
        raise os_error(FileExistsError, errno.EEXIST, f"{path} exists; {hint}, or choose another path")


def write_file(path, write, *, overwrite: bool = False, hint: str = "pass overwrite=True to replace it") -> str:
    """Write a complete file at ``path`` or nothing.

    ``write(fh)`` writes the content into a binary, seekable file object.  Without
    ``overwrite`` the target is created exclusively: if it exists, or another writer creates
    it first, `FileExistsError` (naming ``path`` and ``hint``) and nothing is changed.
    Returns ``path``.
    """
    path = os.fspath(path)
    check_target(path, overwrite=overwrite, hint=hint)
    directory, name = os.path.split(path)
    remove_stale_temporaries(directory, name)
    tmp = temporary_path(path)
    try:
        try:
            fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
            with os.fdopen(fd, "w+b") as fh:
                write(fh)
                fh.flush()
                os.fsync(fh.fileno())
        except FileExistsError:
            raise
        except OSError as err:  # name the user's path, not the temporary
            raise os_error(type(err), err.errno, f"cannot write {path}: {err.strerror or err}") from err
        _publish(tmp, path, overwrite, hint)
        _fsync_directory(directory)
    finally:
        _unlink_quietly(tmp)
    return path


def _publish(tmp, path, overwrite, hint):
    if overwrite:
        try:
            os.replace(tmp, path)
        except OSError as err:
            raise os_error(type(err), err.errno, f"cannot write {path}: {err.strerror or err}") from err
        return
    try:
        os.link(tmp, path)
        return
    except FileExistsError:
        raise _lost_race(path, hint) from None
    except OSError as err:
        if err.errno not in _NO_LINKS:
            raise os_error(type(err), err.errno, f"cannot write {path}: {err.strerror or err}") from err
    try:  # no hard links here: reserve the name exclusively, then move the content onto it
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    except FileExistsError:
        raise _lost_race(path, hint) from None
    os.replace(tmp, path)


def _lost_race(path, hint):
    return os_error(FileExistsError, errno.EEXIST, f"{path} exists (another process wrote it first); {hint}, "
                                                   f"or choose another path")


def write_text(path, text: str, *, overwrite: bool = False) -> str:
    """`write_file` for UTF-8 text."""
    return write_file(path, lambda fh: fh.write(text.encode()), overwrite=overwrite)
