"""P x K identity batches, balanced across data sources, reproducible per step.

Rows of the training cache are *variants* (clean, flipped, degraded, ...) of source *photos*;
``image`` ties the variants of one photo together. For each batch:

1. For each of the P identity slots, draw a source with the given weights (among sources that
   still have an unused eligible identity), then an identity uniformly within that source, without
   repeating an identity within the batch. So a small source (LFW, CFP) is seen as often as a
   large one (CelebA) when their weights are equal, whatever their sizes.
2. For each identity draw K rows: K distinct photos when it has at least K (one random variant
   each). An identity with fewer than K photos gives each of its photos once and, with
   ``fill="variants"``, fills the remaining places with other variants of its photos (rows not
   yet in the batch, drawn without replacement; if it has fewer than K rows in all it gives all
   of them). With ``fill="none"`` it gives only its photos: the batch is then shorter than P*K.
   Pairs of a photo with its own variant are masked in the loss unless asked for
   (:func:`facequal.train.losses.pair_mask`), so filled places mostly add pairs with the
   identity's *other* photos and keep the per-identity gradient (paper, appendix A) steadier.
3. Identities with fewer than ``min_images`` photos (by default those with a single photo) are
   never drawn as identities: they have no pair for the IDQ loss. They are still usable:
   ``singletons`` extra rows per batch are drawn from them (one random variant of a random
   such photo), where they only feed the distillation term.

``batch(step)`` draws from a generator seeded by ``(seed, step)``, so a run resumed at step s
sees exactly the batches an uninterrupted run would.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

FILL_MODES = ("variants", "none")


class PKSampler:
    """Draw batches of row indices: P identities x K rows, sources balanced by weight."""

    def __init__(self, identity: np.ndarray, source: np.ndarray, image: np.ndarray | None = None, *,
                 p: int = 16, k: int = 8, source_weights: Mapping[int, float] | Sequence[float] | None = None,
                 seed: int = 0, min_images: int = 2, fill: str = "variants", singletons: int = 0) -> None:
        identity = np.asarray(identity).reshape(-1)
        source = np.asarray(source).reshape(-1)
        image = np.arange(identity.size) if image is None else np.asarray(image).reshape(-1)
        if not (identity.size == source.size == image.size):
            raise ValueError("identity, source and image need one entry per row")
        if fill not in FILL_MODES:
            raise ValueError(f"fill must be one of {FILL_MODES}, not {fill!r}")
        if p < 1 or k < 1 or min_images < 1:
            raise ValueError("p, k and min_images must be positive")
        self.p, self.k, self.seed = int(p), int(k), int(seed)
        self.fill, self.singletons = fill, int(singletons)

        # identity -> list of photos, each an array of its rows (variants)
        order = np.lexsort((image, identity))
        self._photos: dict[int, list[np.ndarray]] = {}
        self._source_of: dict[int, int] = {}
        for ident in np.unique(identity):
            rows = order[identity[order] == ident]
            srcs = np.unique(source[rows])
            if srcs.size != 1:
                raise ValueError(f"identity {ident} appears in several sources: {srcs.tolist()}")
            imgs = image[rows]
            cuts = np.flatnonzero(np.diff(imgs)) + 1
            self._photos[int(ident)] = np.split(rows, cuts)
            self._source_of[int(ident)] = int(srcs[0])

        elig: dict[int, list[int]] = {}
        single: list[int] = []
        for ident, photos in self._photos.items():
            if len(photos) >= min_images:
                elig.setdefault(self._source_of[ident], []).append(ident)
            else:
                single.append(ident)
        # source id -> its eligible identities
        self.eligible: dict[int, np.ndarray] = {s: np.asarray(sorted(v)) for s, v in sorted(elig.items())}
        self.singleton_ids = np.asarray(sorted(single), dtype=np.int64)
        if not self.eligible:
            raise ValueError(f"no identity has {min_images} or more photos")

        sources = list(self.eligible)
        if source_weights is None:
            w = np.ones(len(sources))
        elif isinstance(source_weights, Mapping):
            w = np.array([float(source_weights.get(s, 0.0)) for s in sources])
        else:
            sw = list(source_weights)
            w = np.array([float(sw[s]) if s < len(sw) else 0.0 for s in sources])
        if np.any(w < 0) or w.sum() <= 0:
            raise ValueError(f"source weights must be >= 0 with a positive sum, got {w.tolist()}")
        self.sources = np.asarray(sources)
        self.weights = w / w.sum()

    @property
    def batch_size(self) -> int:
        """Rows per batch when every identity can give K rows."""
        return self.p * self.k + self.singletons

    def _rows_for(self, ident: int, rng: np.random.Generator) -> list[int]:
        photos = self._photos[ident]
        n = len(photos)
        if n >= self.k:
            chosen = rng.choice(n, size=self.k, replace=False)
            return [int(photos[c][rng.integers(photos[c].size)]) for c in chosen]
        rows = [int(ph[rng.integers(ph.size)]) for ph in photos]
        if self.fill == "variants":
            rest = np.setdiff1d(np.concatenate(photos), rows)
            extra = min(self.k - n, rest.size)
            if extra > 0:
                rows += [int(r) for r in rng.choice(rest, size=extra, replace=False)]
        return rows

    def batch(self, step: int) -> np.ndarray:
        """The row indices of batch number ``step`` (identities grouped, in draw order)."""
        rng = np.random.default_rng([self.seed, int(step)])
        left = {int(s): list(ids) for s, ids in self.eligible.items()}
        rows: list[int] = []
        for _ in range(self.p):
            avail = np.array([len(left[int(s)]) > 0 for s in self.sources])
            if not avail.any():
                break  # fewer eligible identities than P: a smaller batch
            w = np.where(avail, self.weights, 0.0)
            if w.sum() <= 0:  # only zero-weight sources are left
                break
            src = int(self.sources[rng.choice(self.sources.size, p=w / w.sum())])
            pool = left[src]
            ident = int(pool.pop(int(rng.integers(len(pool)))))
            rows += self._rows_for(ident, rng)
        if self.singletons and self.singleton_ids.size:
            picks = rng.choice(self.singleton_ids, size=min(self.singletons, self.singleton_ids.size),
                               replace=False)
            for ident in picks:
                photo = self._photos[int(ident)][0]
                rows.append(int(photo[rng.integers(photo.size)]))
        return np.asarray(rows, dtype=np.int64)
