"""
Write a whole file atomically: a reader, or a run killed with kill -9, never sees half a file.

The data goes to a temp file in the same directory (so the rename stays on one filesystem), is
flushed and fsynced to disk, and then os.replace puts it in place in one step: the path holds the
old file or the new one, never a mix. The temp name is unique (mkstemp), so two processes writing
the same path never share it; if writing fails, the temp file is removed.
"""
import os
import tempfile


def atomic_write(path, data):
    """Write str (as UTF-8) or bytes to path, atomically; creates the parent directory."""
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=d, prefix='.' + os.path.basename(path) + '.', suffix='.tmp')
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(data.encode('utf-8') if isinstance(data, str) else data)
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
