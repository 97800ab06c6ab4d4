"""
Write a whole file atomically: a reader, or a run killed with kill -9, never sees half a file.

The data goes to a temp file in the same directory (so the rename stays on one filesystem), is
flushed and fsynced to disk, and then os.replace puts it in place in one step: the path holds the
old file or the new one, never a mix. The temp name is unique (mkstemp), so two processes writing
the same path never share it; if writing fails, the temp file is removed. `atomic_open` is the
same for a file too big to hold in memory (prepare.py's bins), written as a stream.

A kill -9 between mkstemp and the rename leaves the temp file (`.NAME.XXXXXXXX.tmp`) behind;
`remove_stale_temps` deletes those of a folder, and is run by whoever takes the folder's lock
(dirlock.py), when no other writer can be using them.
"""
import contextlib
import os
import re
import tempfile

# mkstemp's names: our prefix `.NAME.`, 8 random characters, our suffix
TEMP_RE = re.compile(r'^\..+\.[a-z0-9_]{8}\.tmp$')


@contextlib.contextmanager
def atomic_open(path, mode='wb', **kwargs):
    """`with atomic_open(path) as f: f.write(...)`: the file appears at `path` only when the
    block ends without an error."""
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=d, prefix='.' + os.path.basename(path) + '.', suffix='.tmp')
    try:
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the usual file mode
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_write(path, data):
    """Write str (as UTF-8) or bytes to path, atomically; creates the parent directory."""
    with atomic_open(path) as f:
        f.write(data.encode('utf-8') if isinstance(data, str) else data)


def remove_stale_temps(folder):
    """Delete the temp files atomic_open left in `folder` (not below it) when its writer was
    killed. Call only while holding the folder's lock: then no live writer owns one."""
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        path = os.path.join(folder, name)
        if TEMP_RE.match(name) and os.path.isfile(path) and not os.path.islink(path):
            try:
                os.remove(path)
            except OSError:
                pass  # not ours to fight over: a read-only folder keeps it, and says so elsewhere
