"""Solutions to the exercises of chapter 0. Look only after trying!"""

import numpy as np


def ids_from_2017(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exercise 0.1: stored DAVIS-2017 values -> (id map uint8 with void set to 0, void map bool)."""
    void = raw == 255
    return np.where(void, 0, raw).astype(np.uint8), void


def j_recall(per_frame: np.ndarray, threshold: float = 0.5) -> float:
    """Exercise 0.2: the fraction of frames whose score is above the threshold."""
    return float(np.mean(np.asarray(per_frame) > threshold))
