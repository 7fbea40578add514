"""Caffe's log format (glog), so Caffe's tools/extra/parse_log.py and the Fiji U-Net plugin
read our training logs:  I1125 05:32:07.123456  4242 solver.py:118] Iteration 20, lr = 0.01
"""
import logging
import os
import sys
import time

LOGGER = logging.getLogger("unetcore")


class GlogFormatter(logging.Formatter):
    def format(self, record):
        seconds = int(record.created)
        stamp = time.strftime("%m%d %H:%M:%S", time.localtime(seconds))
        micros = int((record.created - seconds) * 1e6)
        return (f"{record.levelname[0]}{stamp}.{micros:06d} {os.getpid():>6} "
                f"{record.filename}:{record.lineno}] {record.getMessage()}")


def log(message, level=logging.INFO):
    LOGGER.log(level, message, stacklevel=2)


def log_to(stream=None, path=None):
    """Send the log to a stream (default stderr, as glog) and optionally to a file too."""
    LOGGER.handlers.clear()
    LOGGER.setLevel(logging.INFO)
    LOGGER.propagate = False
    handlers = [logging.StreamHandler(stream or sys.stderr)]
    if path is not None:
        handlers.append(logging.FileHandler(path, mode="w", encoding="utf-8"))
    for handler in handlers:
        handler.setFormatter(GlogFormatter())
        LOGGER.addHandler(handler)
    return handlers
