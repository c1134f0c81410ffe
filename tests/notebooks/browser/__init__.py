"""Helpers for the real-browser test (tests/notebooks/test_browser.py)."""
