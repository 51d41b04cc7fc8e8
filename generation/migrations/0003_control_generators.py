"""The two real-as-synthetic control generators (2D images and volumes) exist in every database."""

from django.db import migrations

CONTROLS = {"2d": {"resolution": 64, "depth": 1}, "3d": {"resolution": 32, "depth": 16}}


def create(apps, schema_editor):
    Generator = apps.get_model("generation", "Generator")
    for dims, framing in CONTROLS.items():
        Generator.objects.get_or_create(
            name=f"real-as-synthetic control {dims}", version="1",
            defaults={
                "kind": "control", "modalities": ["XR", "CT", "MR"],
                "licence": "the held-out real images' own licences (see each item's source)",
                "config": {"dims": dims, **framing, "companded_ct": True, "training_groups": []},
                "model_card": (
                    f"# real-as-synthetic control ({dims})\n\nNot a model. Held-out real images sent through the "
                    "complete synthetic path (the built-in models' framing and intensity space, the same pool call "
                    "as generation jobs). Analysed as its own generator: its detection rate estimates how much "
                    "readers can tell from the platform's pipeline alone."
                ),
            },
        )


class Migration(migrations.Migration):
    dependencies = [("generation", "0002_control_kind")]
    operations = [migrations.RunPython(create, migrations.RunPython.noop)]
