"""The packages of the distribution (pyproject.toml holds everything else).

conf/ stays at the repository's top level, where it is read and edited, and is shipped inside the
package as fer_lightning/conf/, where fer_lightning/paths.py finds it in an installed wheel. That
takes a computed package list, which pyproject.toml's `packages.find` cannot extend.
"""

from pathlib import Path

from setuptools import find_packages, setup

# conf/local/ holds a user's own settings (git-ignored), never shipped.
CONF = [
    ".".join(("fer_lightning", *folder.parts))
    for folder in sorted({Path("conf"), *(p.parent for p in Path("conf").rglob("*.yaml"))})
    if folder.parts[1:2] != ("local",)
]

setup(
    packages=[*find_packages(include=["fer_lightning*"]), *CONF],
    package_dir={"fer_lightning.conf": "conf"},
    package_data={package: ["*.yaml"] for package in CONF},
)
