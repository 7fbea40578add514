"""The `unetcore` command line: one module per group of verbs, parsing and printing only; the
work is done by library functions that Python code can call too.

    app       the command group; one line per error, never a traceback
    options   the options the verbs share and the checks of their values and paths
    train     train (Caffe's `caffe train`; --modeldef: the Fiji plugin's fine-tuning)
    segment   segment (images, stacks, volumes larger than memory, Fiji plugin models)
    score     test and score (the ISBI 2012 measures)
    data      synth, prepare-volume, weightmap
    nets      shapes, gradcheck, time, draw, device, upgrade, convert, export, plot-log
    fiji      fiji-backend (the caffe_unet and caffe commands the Fiji plugin runs)
"""
from unetcore.cli import data, fiji, nets, score, segment, train  # noqa: F401  (the verbs)
from unetcore.cli.app import main

__all__ = ["main"]
