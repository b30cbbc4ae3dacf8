"""The config groups and options a Hydra app of the project will compose from.

The command-line pre-check (`cli.unknown_choice`) must accept exactly what Hydra accepts: the
project's `conf/`, the nodes stored from code, and a user's own config folders given with
`--config-dir DIR` or `hydra.searchpath=[...]` (on the command line or in the primary config;
docs/configuration.md#your-own-configs). So the search path is built as Hydra's `main` builds it
and its options are read through Hydra's own config loader (hydra-core is pinned to 1.3 in
pyproject.toml: these are internals of that release).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra._internal.utils import create_config_search_path, get_args_parser
from hydra.core.config_search_path import SearchPathQuery
from hydra.core.object_type import ObjectType

from fer_lightning.errors import ConfigError
from fer_lightning.paths import CONFIG_DIR

SEARCHPATH_KEY = "hydra.searchpath"


class ConfigOptions:
    """The groups and options of config `config_name` for the command line `argv`.

    `checkable` is false where the primary config folder itself is replaced (`--config-path`):
    Hydra alone then knows where the configs are.
    """

    def __init__(self, argv: Sequence[str], config_name: str) -> None:
        args, _ = get_args_parser().parse_known_args(list(argv))
        self.checkable = args.config_path is None
        self.config_name = args.config_name or config_name
        self.overrides: list[str] = list(args.overrides)
        search_path = create_config_search_path(str(CONFIG_DIR))
        if args.config_dir is not None:
            config_dir = os.path.abspath(args.config_dir)
            if not os.path.isdir(config_dir):
                raise ConfigError(
                    f"--config-dir {config_dir} is not a folder: give an existing one"
                )
            search_path.prepend(
                provider="command-line",
                path=f"file://{config_dir}",
                anchor=SearchPathQuery(provider="schema"),
            )
        self._loader = ConfigLoaderImpl(config_search_path=search_path)
        # The last one wins, as in Hydra; the other overrides play no part in where configs are.
        self._searchpath = [o for o in self.overrides if o.startswith(f"{SEARCHPATH_KEY}=")][-1:]

    def options(self, group: str) -> list[str]:
        """The options of `group` (none: no such group): files in any folder of the search path,
        and the nodes stored from code."""
        found = self._loader.get_group_options(
            group, ObjectType.CONFIG, self.config_name, self._searchpath
        )
        return sorted(set(found))
