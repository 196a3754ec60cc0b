"""The CNN's per-candidate decision score and the reasons ``rescore_run`` stores (pure).

:func:`decision_score` is one model's score of a box (P(particle) × typicality, or typicality
alone for a class the model barely saw), :func:`rare_class_mask` says which candidates those
are, and :func:`cnn_reasons` writes each candidate's reason.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# Below this many training positives of a class the network has not learned what that class
# looks like, so its P(particle) for the class's candidates is not used: they are judged by
# typicality alone (docs/cnn.md §4), and with the latent-class model the CNN feature is left
# out for that class. Measured: real virus-like particles, with no training positives, got a
# median P(particle) of 0.085 and a third of them were rejected.
MIN_CLASS_POSITIVES = 20


def decision_score(probs: np.ndarray, typ: np.ndarray, rare: np.ndarray) -> np.ndarray:
    """One model's score of each box: P(particle) × typicality, or typicality alone where the
    box's class is rare in that model (:func:`rare_class_mask`)."""
    return np.where(rare, typ, (1.0 - probs[:, 0]) * typ)


def rare_class_mask(candidates: pd.DataFrame, model: dict, typicality: bool = True) -> np.ndarray:
    """Candidates whose class had fewer than :data:`MIN_CLASS_POSITIVES` training positives
    in this model, to be judged by typicality alone. None when there is no typicality to
    judge by (turned off, or a card without it) or no counts, and never for a pick without a
    class (the network's P(particle) decides those)."""
    card = model["card"]
    counts = ((card.get("training") or {}).get("counts") or {}).get("positives")
    if not isinstance(counts, dict) or not typicality or not card.get("typicality"):
        return np.zeros(len(candidates), dtype=bool)

    def rare(p: object) -> bool:
        if p is None or (isinstance(p, float) and p != p):
            return False
        return int(counts.get(str(p), 0)) < MIN_CLASS_POSITIVES

    return candidates["particle"].map(rare).to_numpy(dtype=bool)


def cnn_reasons(
    candidates,
    particle,
    final,
    accepted,
    trusted,
    unknown,
    dropped,
    probs,
    typ,
    models,
    threshold,
    combine,
    rare=None,
):
    # The support/reference reason as the vote stage stored it (m006), never re-parsed text.
    base = candidates["vote_reason"].fillna("").astype(str).tolist()
    classes = models[0]["card"]["classes"]
    same = all(m["card"]["classes"] == classes for m in models) and len(classes) > 1
    mean = np.mean(np.stack(probs), axis=0) if same else None
    top = None
    if mean is not None:
        filled = np.where(np.isnan(mean[:, 1:]), -1.0, mean[:, 1:])
        top = np.argmax(filled, axis=1) + 1
    t_mean = np.mean(np.stack(typ), axis=0)
    out = []
    for i in range(len(candidates)):
        if i in dropped:
            head = f"not scored: {dropped[i]}" + (
                "; trusted reference decides" if trusted[i] else ""
            )
        else:
            word = "combined" if combine else "cnn"
            value = final[i]
            verdict = "accepted" if value >= threshold else "rejected"
            head = (
                f"{word} {value:.3f} {'≥' if value >= threshold else '<'} {threshold:g}: {verdict}"
            )
            details = []
            if combine:
                details.append(f"cnn {particle[i]:.3f}")
            if top is not None:
                k = int(top[i])
                details.append(f"most like {classes[k]} {mean[i, k]:.2f}")
            if t_mean[i] < 1.0:
                details.append(f"typicality {t_mean[i]:.2f}: unlike the consensus positives")
            name = candidates["particle"].iat[i]
            if rare is not None and rare[i]:
                few = "no" if unknown[i] else f"fewer than {MIN_CLASS_POSITIVES}"
                details.append(f"{few} training positives of {name}: judged by typicality only")
            elif unknown[i]:
                details.append(f"class {name} had no training positives")
            if details:
                head += " (" + ", ".join(details) + ")"
            if trusted[i]:
                head += ", but a trusted reference decides: " + (
                    "accepted" if accepted[i] else "rejected"
                )
        out.append(f"{head}; {base[i]}" if base[i] else head)
    return out
