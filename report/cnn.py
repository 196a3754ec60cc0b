"""The report's CNN section: per model, its training curve and training data."""

from __future__ import annotations

from picks.report import figures
from picks.report.context import SectionContext
from picks.report.page import Image, Section, Table, Text


class CnnSection(SectionContext):
    # -- CNN ---------------------------------------------------------------------------------
    def cnn(self) -> Section:
        section = Section(
            "cnn",
            "CNN",
            [
                Text(
                    "The models trained for this run or whose scores it stores: training "
                    "curve (the best epoch, whose weights were kept, dashed) and the training "
                    "data.",
                    "note",
                )
            ],
        )
        for model in self.data.models:
            card = model["card"]
            training = card.get("training") or {}
            counts = training.get("counts") or {}
            history = training.get("history") or []
            best = int(training.get("best_epoch") or 0)
            title = f"model {model['id']}"
            blocks: list = [Text(f"{model['path']}")]
            if history:
                path = figures.training_curve(
                    history, best, self.files / f"training-{model['id']}.png", title=title
                )
                blocks.append(Image(self._rel(path), f"training curve, {title}", ""))
            positives = counts.get("positives") or {}
            n_neg = sum(
                int(counts.get(k, 0))
                for k in ("noise", "negative_references", "image_vetoed", "latent_junk")
            )
            mined = (
                (training.get("hard_negatives") or {}).get("added")
                if isinstance(training.get("hard_negatives"), dict)
                else None
            )
            rows = [[c, int(n)] for c, n in sorted(positives.items())]
            rows.append(["negatives (noise, negative references, confident junk)", n_neg])
            if mined:
                rows.append(["hard negatives added", mined])
            rows.append(
                [
                    "training / validation samples",
                    f"{counts.get('train')} / {counts.get('validation')}",
                ]
            )
            validation = card.get("validation") or {}
            rows.append(
                [
                    "best epoch: validation loss / AUC",
                    f"{validation.get('loss', float('nan')):.3g} / "
                    f"{validation.get('auc', float('nan')):.3g}",
                ]
            )
            blocks.append(
                Table(
                    ["training data", "n"],
                    rows,
                    caption=f"positives per class ({counts.get('positive_rule', 'rule unknown')})",
                )
            )
            section.sections.append(Section(f"cnn-{model['id']}", title, blocks))
        return section
