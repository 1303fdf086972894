"""The release and the results schema version: constants every layer may import (nothing else lives here)."""

__version__ = "0.3.0"
SCHEMA_VERSION = 2  #: moves only for a change to the stored tables that is not an addition (see suite.store)
