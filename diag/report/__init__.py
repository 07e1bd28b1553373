"""Renderers: turn result objects into text, JSON and figures. Nothing here computes."""
