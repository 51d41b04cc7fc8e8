import sys

from tqdm import tqdm


class TqdmProgress:
    """A terminal progress bar for the start/advance/check_cancelled protocol."""

    def __init__(self, enabled: bool = True, unit: str = "it"):
        self.bar, self.enabled, self.unit = None, enabled, unit

    def start(self, total):
        self.bar = tqdm(total=total, unit=self.unit, file=sys.stderr, disable=not self.enabled, dynamic_ncols=True)

    def advance(self, n=1, message=""):
        self.bar.update(n)

    def check_cancelled(self):
        pass

    def close(self):
        if self.bar:
            self.bar.close()
