"""``xentax reproduce``: every experiment, written to one Markdown report with figures."""

from xentax.report._report import SECTIONS as SECTIONS
from xentax.report._report import check_sections as check_sections
from xentax.report._report import reproduce as reproduce

__all__ = ["SECTIONS", "check_sections", "reproduce"]
