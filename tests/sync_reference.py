"""Sync accuracy recomputed with NumPy from the towers' embeddings: a reference for tests.

Independent of ``SyncObjective``/``BalancedSyncAccuracy``: it follows the paper's protocol
as documented (contrastive objective, Euclidean distance of L2-normalised embeddings, in
sync when ``d < threshold``; balanced accuracy = mean of the accuracy on in-sync pairs and
on out-of-sync pairs of one kind). Import it by name (``from sync_reference import ...``).
"""

from __future__ import annotations

import numpy as np


def _embed(tower, x) -> np.ndarray:
    return np.asarray(tower(x, training=False), np.float64)


def _distance(video: np.ndarray, audio: np.ndarray, normalize: bool) -> np.ndarray:
    if normalize:
        video = video / np.sqrt(np.maximum((video**2).sum(-1, keepdims=True), 1e-12))
        audio = audio / np.sqrt(np.maximum((audio**2).sum(-1, keepdims=True), 1e-12))
    return np.sqrt(((video - audio) ** 2).sum(-1) + 1e-12)


def numpy_sync_accuracy(
    video_tower,
    audio_tower,
    batches,
    kind: str = "easy",
    threshold: float = 0.5,
    normalize: bool = True,
) -> dict[str, float]:
    """Balanced sync accuracy of ``kind`` negatives over evaluation ``batches``.

    Args:
        video_tower: Video embedding model.
        audio_tower: Audio embedding model.
        batches: Dict batches as ``pipeline.eval_dataset`` yields them (or NumPy dicts
            with ``video``, ``audio``, ``video_id`` and, for same-video kinds,
            ``audio_<kind>`` and ``valid_<kind>``). The easy negative of an example is
            the next example's audio (``audio_easy`` when present), kept where it comes
            from another video.
        kind: ``"easy"``, ``"hard"`` or ``"super_hard"``.
        threshold: Decision threshold on the distance.
        normalize: L2-normalise the embeddings first.

    Returns:
        ``accuracy``, ``pairs`` (out-of-sync pairs scored), ``pos_distance`` and
        ``neg_distance`` (mean distances over in-sync and scored out-of-sync pairs).
    """
    pos, neg = [], []
    for batch in batches:
        b = {k: np.asarray(v) for k, v in batch.items()}
        video = _embed(video_tower, b["video"])
        if kind == "easy" and "audio_easy" not in b:
            negative = np.roll(b["audio"], -1, axis=0)
            valid = np.roll(b["video_id"], -1, axis=0) != b["video_id"]
        else:
            negative, valid = b[f"audio_{kind}"], b[f"valid_{kind}"].astype(bool)
        pos.append(_distance(video, _embed(audio_tower, b["audio"]), normalize))
        neg.append(_distance(video, _embed(audio_tower, negative), normalize)[valid])
    pos, neg = np.concatenate(pos), np.concatenate(neg)
    return {
        "accuracy": 0.5 * (np.mean(pos < threshold) + np.mean(neg >= threshold)),
        "pairs": int(len(neg)),
        "pos_distance": float(np.mean(pos)),
        "neg_distance": float(np.mean(neg)),
    }
