"""The real-as-synthetic control: a null generator that sends real images through the synthetic path.

Each control "sample" is a held-out real item framed as a built-in model is
trained (`framing.model_frame`), converted to the model's intensity space and
back exactly as sampling does (`intensity`), and added with the same
`add_synthetic_item` call generation jobs use. A perfect generator would output
such images. Whatever readers, or the pixel audit, can tell between these and
real cases is therefore what the platform's own pipeline gives away.

There is one control generator per dimensionality; it is sampled like any
other generator (the Generators page, the API, `manage.py generate`): a job of n
"samples" with seed s holds out n real items of the modality, chosen with that
seed. A control item keeps its source's group (so the original is never drawn
beside it), and the held-out items' groups become the control's training groups
(so none of them is drawn as a real case where control cases are shown).
"""

import numpy as np

from readerstudy.imaging import storage
from readerstudy.imaging.canonical import upsampling
from readerstudy.imaging.models import Dimensionality, Modality, Origin, PoolItem

from .config import ConfigError
from .framing import model_frame
from .intensity import codes_to_model, model_to_unit
from .models import Generator
from .pool import add_synthetic_item

NAME = "real-as-synthetic control"
DEFAULTS = {"2d": {"resolution": 64, "depth": 1}, "3d": {"resolution": 32, "depth": 16}}


def control_generator(dims: str = "2d", resolution: int | None = None, depth: int | None = None,
                      version: str = "1", companded_ct: bool = True) -> Generator:
    """The control generator for 2D images or volumes (created on first use; framing fixed per version)."""
    if dims not in DEFAULTS:
        raise ConfigError("a control makes 2d images or 3d volumes")
    resolution = resolution or DEFAULTS[dims]["resolution"]
    depth = 1 if dims == "2d" else (depth or DEFAULTS[dims]["depth"])
    generator, _ = Generator.objects.get_or_create(
        name=f"{NAME} {dims}", version=version,
        defaults={
            "kind": Generator.Kind.CONTROL, "modalities": list(Modality.values),
            "licence": "the held-out real images' own licences (see each item's source)",
            "config": {"dims": dims, "resolution": resolution, "depth": depth, "companded_ct": companded_ct,
                       "training_groups": []},
            "model_card": (
                f"# {NAME} ({dims})\n\nNot a model. Held-out real images sent through the complete synthetic "
                f"path ({resolution}x{resolution}{f', {depth} slices' if dims == '3d' else ''}, the built-in "
                "models' framing and intensity space, the same pool call as generation jobs). Analysed as its "
                "own generator: its detection rate estimates how much readers can tell from the platform's "
                "pipeline alone."
            ),
        },
    )
    if not generator.is_control:
        raise ConfigError(f"a generator named {generator.name!r} v{version} exists and is not a control")
    return generator


def control_sample(codes: np.ndarray, modality: str, resolution: int, depth: int, companded_ct: bool) -> np.ndarray:
    """What a perfect built-in model would output for this real image: [0, 1], (depth, R, R)."""
    framed = model_frame(codes, resolution, depth)
    model_space = codes_to_model(framed, modality, companded_ct) * 2 - 1  # the [-1, 1] the network learns
    return model_to_unit((np.clip(model_space, -1, 1) + 1) / 2, modality, companded_ct)  # sampling's inverse


def add_control_item(item: PoolItem, generator: Generator, seed: int, job=None) -> PoolItem:
    """The control copy of one real item; its group joins the generator's training groups."""
    if not generator.is_control:
        raise ConfigError(f"{generator} is not a real-as-synthetic control")
    if item.origin != Origin.REAL:
        raise ConfigError(f"item {item.pk} is not a real image")
    cfg = generator.config
    depth = cfg["depth"] if item.dimensionality == Dimensionality.VOLUME else 1
    codes = np.asarray(storage.load_master(item.master_file))
    made = add_synthetic_item(
        control_sample(codes, item.modality, cfg["resolution"], depth, cfg["companded_ct"]),
        modality=item.modality, generator=generator, seed=seed, job=job,
        source_group=item.source_group, body_part=item.body_part, source_info={"control_of": item.pk},
        source_name=f"control of pool item {item.pk}"[:500], source_locator=f"control of item {item.pk}",
    )
    generator.refresh_from_db(fields=["config"])
    groups = set(generator.config.get("training_groups", [])) | {item.source_group}
    generator.config = {**generator.config, "training_groups": sorted(groups)}
    generator.save(update_fields=["config"])
    return made


def held_out_items(generator: Generator, modality: str, n: int, seed: int) -> list[int]:
    """Ids of n real items of the generator's dimensionality, chosen with `seed` among those not yet held out."""
    cfg = generator.config
    dims = Dimensionality.VOLUME if cfg["dims"] == "3d" else Dimensionality.IMAGE
    taken = {i["control_of"] for i in generator.items.values_list("source_info", flat=True) if "control_of" in i}
    candidates = (PoolItem.objects.filter(origin=Origin.REAL, modality=modality, dimensionality=dims)
                  .exclude(pk__in=taken).order_by("pk").values_list("pk", "master_shape"))
    # An item smaller than the control's framing would come out upsampled: a tell of its own.
    pool = [pk for pk, shape in candidates
            if not upsampling(tuple(shape), cfg["resolution"], cfg["resolution"], cfg["depth"])]
    if len(pool) < n:
        size = f"{cfg['resolution']} pixels" + (f" and {cfg['depth']} slices" if cfg["dims"] == "3d" else "")
        raise ConfigError(f"the control needs {n} real {modality} {dims} items of at least {size} not held out "
                          f"yet; {len(pool)} are left")
    rng = np.random.default_rng(seed)
    return [pool[i] for i in sorted(rng.choice(len(pool), size=n, replace=False))]


def run_control(job, generator: Generator, reporter) -> dict:
    """A control "generation" job: hold out n real items chosen with the job's seed (resumable by seed)."""
    p = job.params
    seeds = [p["seed"] + i for i in range(p["n"])]
    if "held_out" not in p:  # chosen once, so a retry continues with the same items
        p["held_out"] = held_out_items(generator, p["modality"], p["n"], p["seed"])
        job.params = p
        type(job).objects.filter(pk=job.pk).update(params=p)  # only this field: the state is the runner's
    done = set(job.generated_items.values_list("seed", flat=True))
    reporter.start(len(seeds))
    if done:
        reporter.advance(len(done), f"{len(done)} control items already made; continuing")
    items = PoolItem.objects.in_bulk(p["held_out"])
    for s, pk in zip(seeds, p["held_out"]):
        if s in done:
            continue
        reporter.check_cancelled()
        add_control_item(items[pk], generator, s, job=job)
        reporter.advance(1, f"seed {s}: control of real item {pk}")
    made = job.generated_items.count()
    return {"items": list(job.generated_items.order_by("seed").values_list("pk", flat=True)),
            "held_out": p["held_out"],
            "summary": f"{made} {p['modality']} control items from held-out real items ({generator})"}
