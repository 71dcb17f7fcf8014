"""Plots, image grids and the HTML/Markdown report."""
