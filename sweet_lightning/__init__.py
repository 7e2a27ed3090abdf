"""sweet_lightning: Early-Exit, SWEET and Multi-Model adaptive inference, as Lightning modules."""

from sweet_lightning.resolvers import register_resolvers

__version__ = "0.1.0"

# the configs' ${sl.*} resolvers, for every entry point that composes them (launch.py, the gradient
# analysis, notebooks, tests); a config is resolved lazily, so registering on import is early enough
register_resolvers()
