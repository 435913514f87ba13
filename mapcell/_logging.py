"""The package logger. mapcell never configures the root logger."""

from __future__ import annotations

import logging
import time
import warnings
from contextlib import contextmanager
from datetime import timedelta

logger = logging.getLogger("mapcell")


def _ensure_handler() -> None:
    # One stream handler on mapcell's own logger (never the root's); it does not propagate, so a
    # root handler configured by the user does not print every line twice.
    if not any(getattr(h, "_mapcell", False) for h in logger.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler._mapcell = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.propagate = False


#: Lightning's own loggers, which print hardware and tip lines at INFO on every fit.
_LIGHTNING_LOGGERS = ("lightning.pytorch", "lightning.fabric", "pytorch_lightning")


@contextmanager
def quiet_lightning():
    """Hold Lightning's loggers at WARNING for one training run, unless mapcell logs DEBUG."""
    if logger.isEnabledFor(logging.DEBUG):
        yield
        return
    saved = {name: logging.getLogger(name).level for name in _LIGHTNING_LOGGERS}
    for name in _LIGHTNING_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            # Raised inside Lightning on every fit with current torch; nothing a user can act on.
            warnings.filterwarnings("ignore", message=".*LeafSpec.*")
            yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


@contextmanager
def timed(step: str):
    """Log ``step`` at INFO level, then ``finished (0:00:01)`` when the block ends."""
    start = time.perf_counter()
    logger.info(step)
    yield
    elapsed = timedelta(seconds=round(time.perf_counter() - start))
    logger.info("    finished (%s)", elapsed)


def log_added(fields: list[str]) -> None:
    """Log the list of fields a tool wrote into an AnnData, as scanpy does."""
    logger.info("added\n%s", "\n".join(f"    {field}" for field in fields))
