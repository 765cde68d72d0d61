"""Reusable widgets: plots, heatmap, image tables, drop area, notices."""
