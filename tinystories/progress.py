"""
Progress for long work, the same way in every stage: a live tqdm bar when stderr is a terminal;
otherwise (CI logs, `> file`, nohup) a plain line every `every` seconds, instead of thousands of
carriage-return updates that fill a log file with one unreadable line.
"""
import sys
import time

from tqdm import tqdm


class _Lines:
    """tqdm's interface (update, set_postfix, write, close, total) printing a line at intervals."""

    def __init__(self, iterable=None, total=None, desc='', initial=0, every=30.0, unit='it', **_):
        self.iterable, self.desc, self.unit, self.every = iterable, desc or 'progress', unit, every
        self.total = len(iterable) if total is None and hasattr(iterable, '__len__') else total
        self.n, self.postfix, self.t0 = initial, '', time.time()
        self.last, self.shown = self.t0, initial

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.update(1)
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def update(self, n=1):
        self.n += n
        if time.time() - self.last >= self.every:
            self.last = time.time()
            self._line()

    def set_postfix(self, ordered_dict=None, refresh=True, **kwargs):
        items = dict(ordered_dict or {}, **kwargs)
        self.postfix = ', '.join(f'{k}={v}' for k, v in items.items())

    def refresh(self):
        pass

    def _line(self):
        self.shown = self.n
        of = f"/{self.total:,}" if self.total else ''
        rate = self.n / max(1e-9, time.time() - self.t0)
        extra = f" ({self.postfix})" if self.postfix else ''
        print(f"{self.desc}: {self.n:,}{of} {self.unit} [{time.time() - self.t0:.0f}s, "
              f"{rate:,.1f} {self.unit}/s]{extra}", file=sys.stderr, flush=True)

    @staticmethod
    def write(text, file=None):
        print(text, file=file or sys.stdout, flush=True)

    def close(self):
        if self.n != self.shown:
            self._line()


def progress(iterable=None, **kwargs):
    """`tqdm(...)` on a terminal, a line per interval elsewhere; `disable=True` shows nothing."""
    if kwargs.get('disable') or sys.stderr.isatty():
        kwargs.pop('every', None)
        return tqdm(iterable, dynamic_ncols=True, **kwargs)
    return _Lines(iterable, **kwargs)
