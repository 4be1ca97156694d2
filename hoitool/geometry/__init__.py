"""Geometry: rotations, rigid transforms, meshes, signed distances and grids."""
