"""moalign: multi-objective alignment of language models.

Train one model that balances several objectives and serve it with a preference vector chosen per
request. The package follows the data flow: ``data`` -> ``objectives`` -> ``moo`` -> ``train`` ->
``hoe`` -> ``eval`` / ``serve``; lower layers never import higher ones.
"""

from moalign.errors import MoalignError
from moalign.preference import PreferenceError, normalize_preference

__version__ = "0.1.0"

__all__ = ["MoalignError", "PreferenceError", "normalize_preference", "__version__"]
