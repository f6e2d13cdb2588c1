"""Widgets of the main window: voice picker, latency panel, text view, message bar."""
