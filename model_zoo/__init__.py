"""The shipped demo family, installed as the package `edged._zoo` (setup.py): zoo.yaml and its model files."""
