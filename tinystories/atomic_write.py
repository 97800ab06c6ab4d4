"""
Write a whole file atomically: a reader, or a run killed with kill -9, never sees half a file.

The data goes to a temp file in the same directory (so the rename stays on one filesystem), is
flushed and fsynced to disk, and then os.replace puts it in place in one step: the path holds the
old file or the new one, never a mix. The temp name is unique (mkstemp), so two processes writing
the same path never share it; if writing fails, the temp file is removed. `atomic_open` is the
same for a file too big to hold in memory (prepare.py's bins), written as a stream.
"""
import contextlib
import os
import tempfile


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
