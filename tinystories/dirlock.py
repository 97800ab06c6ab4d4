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
"""
import fcntl
import os

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
    key = os.path.realpath(path)
    if key in _held:
        return
    lock_path = os.path.join(path, '.lock')
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise SystemExit(f"error: cannot write in {path}: {e.strerror}")
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


def unlock_dir(path):
    """Release a lock taken by this process (most stages simply hold it until they exit)."""
    fd = _held.pop(os.path.realpath(path), None)
    if fd is not None:
        os.close(fd)
