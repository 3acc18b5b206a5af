"""``isic monitor``: what a deployed model sees and how it does, window by window, against the
bundle's reference statistics (drift, review rate, outcomes corrected for verification bias)."""
