"""Packages that pyproject.toml cannot declare: the demo family in model_zoo/ ships as the package `edged._zoo`.

A wheel carries it as package data; an editable install maps `edged._zoo` onto the checkout's model_zoo/. Either
way `edged.zoo.manifest.shipped_zoo_path()` finds it through the import system.
"""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["edged*"]), "edged._zoo"],
    package_dir={"edged._zoo": "model_zoo"},
)
