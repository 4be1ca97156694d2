"""The procedural synthetic HOI corpus: objects per category and planned grasps."""
