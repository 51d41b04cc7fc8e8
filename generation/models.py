from django.db import models


class Generator(models.Model):
    """A source of synthetic images: a model the platform trained, a user's pipeline, or an imported set."""

    class Kind(models.TextChoices):
        BUILTIN_2D = "builtin-2d", "Built-in 2D diffusion model"
        BUILTIN_3D = "builtin-3d", "Built-in volume diffusion model"
        LOCAL_PIPELINE = "local-pipeline", "Local diffusers pipeline"
        EXTERNAL = "external", "Imported external synthetic set"
        DRR = "drr", "Physics-simulated radiograph (DRR)"
        CONTROL = "control", "Real-as-synthetic control (real images through the synthetic path)"

    name = models.CharField(max_length=200)
    version = models.CharField(max_length=50, default="1")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    modalities = models.JSONField(default=list, help_text="Modalities it produces, e.g. ['XR', 'CT'].")
    path = models.CharField(max_length=500, blank=True, help_text="Model folder (save_pretrained layout), if any.")
    licence = models.CharField(max_length=300, blank=True)
    model_card = models.TextField(blank=True)
    config = models.JSONField(default=dict, blank=True)
    realism = models.JSONField(default=dict, blank=True, help_text="Detector AUC, memorisation and diversity of "
                               "its samples (generation/realism.py), measured by a realism job.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "version"]
        constraints = [models.UniqueConstraint(fields=["name", "version"], name="unique_generator_version")]
        permissions = [("generate_images", "Sample generators into the pool")]

    def __str__(self):
        return f"{self.name} v{self.version}"

    @property
    def realism_headline(self) -> dict | None:
        """The detector result of its best-sampled stratum (see generation/realism.py), if measured."""
        from .realism import headline

        return headline(self.realism)

    @property
    def is_control(self) -> bool:
        """Its "samples" are real images: a null generator that measures what the pipeline alone gives away."""
        return self.kind == self.Kind.CONTROL
