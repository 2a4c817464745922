"""wakd: visual geo-localization with a NetVLAD teacher and an attention-distilled student."""

__version__ = "0.1.0"
