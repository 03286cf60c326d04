"""The package version, on the lowest floor: modules that record it (the lock file, results) import it
from here, not from the package face above them."""

__version__ = "0.1.0"
