import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q


class Modality(models.TextChoices):
    XR = "XR", "X-ray (radiograph)"
    CT = "CT", "CT"
    MR = "MR", "MR"


class Origin(models.TextChoices):
    REAL = "real", "Real"
    SYNTHETIC = "synthetic", "Synthetic"


class Dimensionality(models.TextChoices):
    IMAGE = "2d", "2D image"
    VOLUME = "3d", "Volume"


class Dataset(models.Model):
    """Where pool items came from: a collection of real scans or a synthetic set, with its licence."""

    name = models.CharField(max_length=200, unique=True)
    origin = models.CharField(max_length=10, choices=Origin.choices)
    licence = models.CharField(max_length=300, help_text="Licence or data-use terms, e.g. 'MIT', 'CC BY 4.0'.")
    source = models.TextField(blank=True, help_text="Citation, package or URL the data came from.")
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name


class PoolItem(models.Model):
    """One case in the image pool: a 2D image or a volume, real or synthetic.

    Provenance (origin, data set, source hash, generator, seed, prompt) is for
    coordinators and analysts only; readers see canonical renditions through
    opaque tokens and nothing from this row.
    """

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    modality = models.CharField(max_length=2, choices=Modality.choices, db_index=True)
    dimensionality = models.CharField(max_length=2, choices=Dimensionality.choices)
    origin = models.CharField(max_length=10, choices=Origin.choices, db_index=True)
    body_part = models.CharField(max_length=50, blank=True, help_text="e.g. chest, head, abdomen")
    dataset = models.ForeignKey(Dataset, on_delete=models.PROTECT, related_name="items")

    # Provenance of real (and imported synthetic) files.
    source_name = models.CharField(max_length=500, blank=True, help_text="File or series name at import.")
    source_sha256 = models.CharField(max_length=64, blank=True, db_index=True)
    source_locator = models.CharField(
        max_length=100, blank=True, help_text="Which part of the source this item is, e.g. 'slice 40 of 133'."
    )
    source_group = models.CharField(
        max_length=120, db_index=True, editable=False,
        help_text="What the case was made from (patient, source file, parent volume, or generator and seed); "
        "a study shows at most one case per group. See imaging/sources.py.",
    )
    content_sha256 = models.CharField(
        max_length=64, db_index=True, editable=False, help_text="SHA-256 of the stored codes (exact duplicates share it)."
    )
    # Provenance of synthetic items.
    generator = models.ForeignKey(
        "generation.Generator", null=True, blank=True, on_delete=models.PROTECT, related_name="items"
    )
    generation_job = models.ForeignKey(
        "jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="generated_items"
    )
    seed = models.BigIntegerField(null=True, blank=True)
    prompt = models.TextField(blank=True)

    # The master array: uint16 canonical codes, shape (depth, rows, cols), in POOL_ROOT.
    master_file = models.CharField(max_length=200, editable=False)
    master_shape = models.JSONField(editable=False)
    native_shape = models.JSONField(help_text="Shape of the source before any resampling (depth, rows, cols).")
    native_spacing_mm = models.JSONField(null=True, blank=True)
    source_info = models.JSONField(
        default=dict, blank=True, help_text="What the decoder saw: format, transfer syntax, photometric, notes."
    )

    quality = models.JSONField(
        default=dict, blank=True, help_text="Privacy and quality checks: nearest real image, near-copy flag, slice consistency."
    )

    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    import_job = models.ForeignKey(
        "jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="imported_items"
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        permissions = [("import_images", "Import and upload images into the pool")]
        constraints = [
            models.UniqueConstraint(
                fields=["dataset", "source_sha256", "source_locator"],
                condition=~Q(source_sha256=""),
                name="unique_source_per_dataset",
            ),
            models.UniqueConstraint(
                fields=["generation_job", "seed"],
                condition=Q(generation_job__isnull=False, seed__isnull=False),
                name="one_item_per_job_seed",
            ),
            models.CheckConstraint(
                condition=Q(origin=Origin.REAL, generator__isnull=True)
                | Q(origin=Origin.SYNTHETIC, generator__isnull=False),
                name="synthetic_items_name_their_generator",
            ),
        ]

    def __str__(self):
        return f"{self.get_modality_display()} {self.get_dimensionality_display().lower()} #{self.pk}"

    @property
    def depth(self) -> int:
        return self.master_shape[0]


class Rendition(models.Model):
    """The canonical DICOM series of a pool item at one matrix size (what readers are served)."""

    item = models.ForeignKey(PoolItem, on_delete=models.CASCADE, related_name="renditions")
    rows = models.PositiveIntegerField()
    cols = models.PositiveIntegerField()
    depth = models.PositiveIntegerField()
    directory = models.CharField(max_length=100, unique=True, editable=False)
    file_bytes = models.JSONField(editable=False, help_text="Size of each slice file in bytes.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["item", "rows", "cols", "depth"], name="one_rendition_per_preset")
        ]

    def __str__(self):
        return f"{self.item} at {self.rows}x{self.cols}x{self.depth}"
