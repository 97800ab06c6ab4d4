"""
One writer per directory: an exclusive lock held for as long as the process lives.

Two runs writing the same folder (two generate_data.py on one stories_dir, two train.py on one
out_dir) would each think they own it: stories paid twice, logs interleaved, checkpoints renamed
under each other. So every stage that writes a directory first takes `lock_dir(path)`.

The lock is `fcntl.flock` on `path/.lock`. The kernel releases it when the process dies, however
it dies, so kill -9 never leaves a stale lock and an immediate re-run gets it. The holder's pid is
written into the file, so a refused second writer can say who holds it. flock belongs to the open
file, which a fork() shares: worker processes (prepare.py's pool) would keep the lock held after
their parent is killed, so each child closes its copy as soon as it is forked.

A writer killed mid-write leaves its atomic_write temp file behind (`.ckpt.pt.XXXXXXXX.tmp`,
as large as a checkpoint). Nobody else may write in a locked folder, so the run that takes the
lock removes the temp files of that kind it finds there.

A stage that replaces a whole folder (export.py) cannot keep the lock inside it: `lock_beside`
locks a hidden sibling file, `parent/.NAME.lock`, instead.
"""
import fcntl
import os

from tinystories.atomic_write import remove_stale_temps

_held = {}  # realpath -> open file descriptor (kept open: closing it releases the lock)


def _close_in_child():
    for fd in _held.values():
        try:
            os.close(fd)
        except OSError:
            pass
    _held.clear()


os.register_at_fork(after_in_child=_close_in_child)


def lock_dir(path, what='run'):
    """Make `path` (if needed) and hold its exclusive lock until this process exits. Taking the
    same lock again in the same process is a no-op. A second process gets a one-line error."""
    try:
        os.makedirs(path, exist_ok=True)
    except FileExistsError:
        raise SystemExit(f"error: {path} exists and is not a directory")
    except OSError as e:
        raise SystemExit(f"error: cannot create {path}: {e.strerror}")
    if _take(os.path.join(path, '.lock'), path, what):
        remove_stale_temps(path)


def lock_beside(path, what='export'):
    """Hold the lock of `path` in a sibling file, parent/.NAME.lock, for a folder that is itself
    deleted and replaced while the lock is held. The parent is made if needed."""
    parent, name = os.path.split(os.path.abspath(path))
    try:
        os.makedirs(parent, exist_ok=True)
    except OSError as e:
        raise SystemExit(f"error: cannot create {parent}: {e.strerror}")
    _take(os.path.join(parent, f'.{name}.lock'), path, what)


def _take(lock_path, path, what):
    """flock lock_path for the life of the process; True when newly taken (False: held already)."""
    key = os.path.realpath(lock_path)
    if key in _held:
        return False
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise SystemExit(f"error: cannot write in {os.path.dirname(lock_path) or '.'}: {e.strerror}")
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode('ascii', 'replace').strip() or 'unknown'
        os.close(fd)
        raise SystemExit(f"error: {path} is in use by another {what} (pid {holder}): wait for it to "
                         f"finish or stop it, or use another directory")
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _held[key] = fd
    return True


def unlock_dir(path):
    """Release a lock taken by this process (most stages simply hold it until they exit)."""
    fd = _held.pop(os.path.realpath(os.path.join(path, '.lock')), None)
    if fd is not None:
        os.close(fd)
