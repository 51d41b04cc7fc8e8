"""The real-as-synthetic control: a null generator that sends real images through the synthetic path.

Each control "sample" is a held-out real item framed as a built-in model is
trained (`framing.model_frame`), converted to the model's intensity space and
back exactly as sampling does (`intensity`), and added with the same
`add_synthetic_item` call generation jobs use. A perfect generator would output
such images. Whatever readers, or the pixel audit, can tell between these and
real cases is therefore what the platform's own pipeline gives away.

The control item keeps its source's group (so the original is never drawn beside
it), and the held-out items' groups are recorded as the control's training
groups (so none of them is drawn as a real case where control cases are shown).
"""

import numpy as np
from django.db import transaction

from readerstudy.imaging import storage
from readerstudy.imaging.models import Dimensionality, Modality, Origin, PoolItem

from .config import ConfigError
from .framing import model_frame
from .intensity import codes_to_model, model_to_unit
from .models import Generator
from .pool import add_synthetic_item

NAME = "real-as-synthetic control"


def control_generator(resolution: int = 64, depth: int = 16, companded_ct: bool = True,
                      version: str = "1") -> Generator:
    """The control generator (one per framing: resolution, depth and CT intensity space)."""
    generator, _ = Generator.objects.get_or_create(
        name=NAME, version=version,
        defaults={
            "kind": Generator.Kind.CONTROL, "modalities": list(Modality.values),
            "licence": "the held-out real images' own licences (see each item's source)",
            "config": {"resolution": resolution, "depth": depth, "companded_ct": companded_ct,
                       "training_groups": []},
            "model_card": (
                f"# {NAME}\n\nNot a model. Held-out real images sent through the complete synthetic path "
                f"({resolution}x{resolution}, volumes {depth} slices, the built-in models' framing and intensity "
                "space, the same pool call as generation jobs). Analysed as its own generator: its detection "
                "rate estimates how much readers can tell from the platform's pipeline alone."
            ),
        },
    )
    if not generator.is_control:
        raise ConfigError(f"a generator named {NAME!r} v{version} exists and is not a control")
    return generator


def control_sample(codes: np.ndarray, modality: str, resolution: int, depth: int, companded_ct: bool) -> np.ndarray:
    """What a perfect built-in model would output for this real image: [0, 1], (depth, R, R)."""
    framed = model_frame(codes, resolution, depth)
    model_space = codes_to_model(framed, modality, companded_ct) * 2 - 1  # the [-1, 1] the network learns
    return model_to_unit((np.clip(model_space, -1, 1) + 1) / 2, modality, companded_ct)  # sampling's inverse


@transaction.atomic
def add_control_items(items: list[PoolItem], generator: Generator, job=None) -> list[PoolItem]:
    """One control item per held-out real item (all or none); records their groups on the generator."""
    if not generator.is_control:
        raise ConfigError(f"{generator} is not a real-as-synthetic control")
    cfg = generator.config
    made = []
    for item in items:
        if item.origin != Origin.REAL:
            raise ConfigError(f"item {item.pk} is not a real image")
        depth = cfg["depth"] if item.dimensionality == Dimensionality.VOLUME else 1
        codes = np.asarray(storage.load_master(item.master_file))
        sample = control_sample(codes, item.modality, cfg["resolution"], depth, cfg["companded_ct"])
        made.append(add_synthetic_item(
            sample, modality=item.modality, generator=generator, seed=item.pk, job=job,
            source_group=item.source_group, body_part=item.body_part,
            source_name=f"control of pool item {item.pk}"[:500], source_locator=f"control of item {item.pk}",
        ))
    groups = sorted(set(cfg.get("training_groups", [])) | {i.source_group for i in items})
    generator.config = {**cfg, "training_groups": groups}
    generator.save(update_fields=["config"])
    return made
