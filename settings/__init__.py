"""Configuration: YAML layers and profiles (``layers``), a mapping to a typed dataclass
(``build``), dotted and moved keys (``keys``), ``--help`` (``help``), how a config class
declares its ``isic`` command (``command``) and the declared runs of ``make all`` (``chain``)."""
