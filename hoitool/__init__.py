"""hoitool: one toolkit for 3D hand-object interaction."""

__version__ = "0.1.0"
