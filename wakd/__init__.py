"""wakd: visual geo-localization with a NetVLAD teacher and an attention-distilled student.

``wakd.load_model(checkpoint)`` and ``wakd.describe(model, images)`` use a trained network on any
photos (:mod:`wakd.inference`); they are imported on first use, so ``import wakd`` stays light.
"""

__version__ = "0.1.0"

__all__ = ["describe", "load_model"]


def __getattr__(name: str):
    if name in __all__:
        from wakd import inference

        return getattr(inference, name)
    raise AttributeError(f"module 'wakd' has no attribute {name!r}")
