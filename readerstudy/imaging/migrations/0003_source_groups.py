"""Source groups and content hashes for existing items (see imaging/sources.py)."""

import hashlib

import numpy as np
from django.conf import settings
from django.db import migrations, models
from django.db.models import Q


def fill(apps, schema_editor):
    PoolItem = apps.get_model("imaging", "PoolItem")
    for item in PoolItem.objects.all().iterator():
        path = settings.POOL_ROOT / "masters" / item.master_file
        if path.exists():
            codes = np.ascontiguousarray(np.load(path, mmap_mode="r"), dtype="<u2")
            h = hashlib.sha256(repr(codes.shape).encode())
            h.update(codes.tobytes())
            item.content_sha256 = h.hexdigest()
        if item.generator_id is not None and item.seed is not None:
            item.source_group = f"sample:{item.generator_id}:{item.seed}"
        elif item.source_sha256:
            item.source_group = f"file:{item.source_sha256}"
        else:
            item.source_group = f"content:{item.content_sha256 or item.pk}"
        item.save(update_fields=["source_group", "content_sha256"])


class Migration(migrations.Migration):
    dependencies = [
        ("imaging", "0002_pool_item_quality"),
        ("jobs", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="poolitem",
            name="source_group",
            field=models.CharField(
                db_index=True, default="", editable=False, max_length=120,
                help_text="What the case was made from (patient, source file, parent volume, or generator and seed); "
                "a study shows at most one case per group. See imaging/sources.py.",
            ),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="poolitem",
            name="content_sha256",
            field=models.CharField(
                db_index=True, default="", editable=False, max_length=64,
                help_text="SHA-256 of the stored codes (exact duplicates share it).",
            ),
            preserve_default=False,
        ),
        migrations.RunPython(fill, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="poolitem",
            constraint=models.UniqueConstraint(
                condition=Q(generation_job__isnull=False, seed__isnull=False),
                fields=("generation_job", "seed"),
                name="one_item_per_job_seed",
            ),
        ),
    ]
