"""Fine-tuning a local Stable Diffusion pipeline on pool images (generation/finetune.py), at tiny size on the
CPU: LoRA and full UNet, the saved folder loads as a pipeline whose fused UNet is the adapter's, training
resumes bit for bit, the command registers it, and a generation job samples it with a prompt."""

import pytest
import torch
from django.core.management import CommandError, call_command
from safetensors.torch import load_file

from generation.config import ConfigError
from generation.finetune import FinetuneConfig, caption_for, finetune, read_meta
from generation.generate import create_generation_job, run_generation
from generation.models import Generator
from readerstudy.imaging.models import Origin, PoolItem
from readerstudy.jobs.progress import run_job

from .studies import make_pool
from .test_generation import tiny_stable_diffusion  # noqa: F401  (fixture: an offline tiny SD pipeline)

pytestmark = pytest.mark.django_db


@pytest.fixture
def xrays():
    make_pool(real={("XR", "2d"): 6, ("MR", "2d"): 2}, synthetic={})
    PoolItem.objects.filter(origin=Origin.REAL, modality="XR").update(body_part="chest")
    first = PoolItem.objects.filter(modality="XR").order_by("pk").first()
    first.prompt = "frontal chest x-ray, no findings"  # a caption the coordinator set
    first.save(update_fields=["prompt"])


def tiny(**changes) -> FinetuneConfig:
    return FinetuneConfig.from_dict({"modalities": ["XR"], "steps": 4, "batch_size": 2, "checkpoint_every": 2,
                                     "lora_rank": 4, "lora_alpha": 4, **changes})


def unet_weights(folder):
    return load_file(str(folder / "unet" / "diffusion_pytorch_model.safetensors"))


def test_lora_fine_tuning_saves_a_pipeline_whose_fused_unet_is_the_adapters(tiny_stable_diffusion, xrays,  # noqa: F811
                                                                             tmp_path):
    from diffusers import UNet2DConditionModel

    folder = finetune(tiny_stable_diffusion, tmp_path / "lora-v1", tiny(), name="tiny-lora")
    meta = read_meta(folder)
    assert meta["training_items"] == 6 and meta["training_images"] == 6 and meta["resolution"] == 16
    assert "frontal chest x-ray, no findings" in meta["captions"] and "x-ray of the chest" in meta["captions"]
    assert len(meta["training_groups"]) == 6 and "peft" in (folder / "MODEL_CARD.md").read_text()
    for part in ("vae", "text_encoder", "tokenizer", "scheduler", "model_index.json", "lora"):
        assert (folder / part).exists(), part
    base, tuned = unet_weights(tiny_stable_diffusion), unet_weights(folder)
    assert base.keys() == tuned.keys()  # a plain UNet again: the adapter is fused in
    assert any(not torch.equal(base[k], tuned[k]) for k in base)

    # The fused UNet computes what the base UNet with the saved adapter computes.
    with_adapter = UNet2DConditionModel.from_pretrained(tiny_stable_diffusion / "unet")
    with_adapter.load_lora_adapter(folder / "lora", prefix=None, use_safetensors=True)
    fused = UNet2DConditionModel.from_pretrained(folder / "unet")
    x, t, text = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1)), torch.tensor([10]), \
        torch.randn(1, 77, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(fused(x, t, text).sample, with_adapter(x, t, text).sample, atol=1e-5, rtol=1e-4)


def test_fine_tuning_resumes_bit_for_bit_and_full_tuning_changes_every_block(tiny_stable_diffusion, xrays,  # noqa: F811
                                                                             tmp_path):
    straight = finetune(tiny_stable_diffusion, tmp_path / "straight", tiny(steps=4))
    finetune(tiny_stable_diffusion, tmp_path / "halves", tiny(steps=2))
    with pytest.raises(ConfigError, match="only 'steps' may change"):
        finetune("", tmp_path / "halves", tiny(steps=4, learning_rate=0.5), resume=True)
    resumed = finetune("", tmp_path / "halves", tiny(steps=4), resume=True)
    a, b = unet_weights(straight), unet_weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert read_meta(resumed)["steps_trained"] == 4

    full = finetune(tiny_stable_diffusion, tmp_path / "full", tiny(method="full", steps=2))
    assert not (full / "lora").exists()
    base, tuned = unet_weights(tiny_stable_diffusion), unet_weights(full)
    changed = {k.split(".")[0] for k in base if not torch.equal(base[k], tuned[k])}
    assert {"down_blocks", "up_blocks", "conv_in"} <= changed


def test_the_command_registers_the_pipeline_and_a_job_samples_it_with_a_prompt(tiny_stable_diffusion, xrays,  # noqa: F811
                                                                                tmp_path, capsys):
    call_command("finetune_pipeline", str(tiny_stable_diffusion), name="tiny-roentgen", licence="CreativeML OpenRAIL-M",
                 set=["steps=2", "batch_size=2", "lora_rank=4", "lora_alpha=4"], output_root=str(tmp_path),
                 no_progress=True)
    assert "Registered generator tiny-roentgen v1" in capsys.readouterr().out
    generator = Generator.objects.get(name="tiny-roentgen")
    assert generator.kind == Generator.Kind.LOCAL_PIPELINE and generator.config["takes_prompt"]
    assert generator.path == str(tmp_path / "tiny-roentgen" / "v1") and "CC0" in generator.licence
    assert len(generator.config["training_groups"]) == 6 and "Fine-tuned" in generator.model_card
    job = run_job(create_generation_job(generator, "XR", 2, seed=0, steps=2, prompt="x-ray of the chest").pk,
                  run_generation)
    assert job.status == "succeeded", job.error
    assert PoolItem.objects.filter(generator=generator, prompt="x-ray of the chest").count() == 2

    for bad, message in [(["method=dreambooth"], "method must be lora or full"),
                         (["colour=1"], "known key"), (["caption={patient}"], "caption must be a template")]:
        with pytest.raises(CommandError, match=message):
            call_command("finetune_pipeline", str(tiny_stable_diffusion), name="bad", set=bad,
                         output_root=str(tmp_path), no_progress=True)
    with pytest.raises(CommandError, match="not a diffusers pipeline folder"):
        call_command("finetune_pipeline", str(tmp_path), name="bad", output_root=str(tmp_path), no_progress=True)
    with pytest.raises(CommandError, match="nothing to resume"):
        call_command("finetune_pipeline", name="bad", resume=str(tmp_path / "nowhere"), no_progress=True)


def test_captions_come_from_the_item_or_the_template(tiny_stable_diffusion, xrays, tmp_path):  # noqa: F811
    plain = PoolItem.objects.filter(modality="XR", prompt="").first()
    assert caption_for(plain, "{modality} of the {body_part}, {dataset}") == "x-ray of the chest, phantoms"
    with pytest.raises(ConfigError, match="no real CT images"):
        finetune(tiny_stable_diffusion, tmp_path / "none", tiny(modalities=["CT"]))
