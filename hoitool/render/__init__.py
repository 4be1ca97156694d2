"""Rendering: headless offscreen (pyrender) and, later, differentiable soft rasterisation."""
