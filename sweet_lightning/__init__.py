"""sweet_lightning: Early-Exit, SWEET and Multi-Model adaptive inference, as Lightning modules."""

__version__ = "0.1.0"
