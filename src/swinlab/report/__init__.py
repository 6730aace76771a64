"""The run report: one self-contained HTML page (``report.html``) of what a
trained model does -- run, curves, accuracy, best / worst classes,
most-confused pairs, examples with attention -- built from a run folder and
its ``eval/`` outputs (:func:`write_report`)."""

from .build import write_report

__all__ = ["write_report"]
